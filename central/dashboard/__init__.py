"""The dispatcher dashboard (Textual): the fleet, alarms, a map, reports, media; act in a few keys.

Rules of this room (Textual's "attributes down, messages up"):

- `app.py` owns the state and every decision. It is the only module that imports the screens,
  and nothing imports it but the command-line entry points, the bench and the tests.
- `screens/` and `widgets/` (one class per file) draw what comes down to them: widgets get
  their data as arguments, screens read the read-only `view.DashboardView`. For whatever a
  dispatcher does they post a message (`messages.py`: `BusAction`, `AckAlarm`, ...) that
  bubbles up to the app. `commands.py` (the palette) does the same.
- `link.py` is the MQTT worker: it only posts messages (`FleetUpdated`, `LinkStatus`,
  `ReplyReceived`); `state.py` holds the pure `apply` functions and the views the screens draw.

Why the cut: screens used to call the app (`self.dash.assign(...)`) and the palette imported it,
so app, palette and every screen imported each other; now the imports run one way only.
"""
