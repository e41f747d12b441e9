"""The dashboard's widgets, one class per file: they draw what they are given as arguments.

A widget knows neither the app nor the screens (tests/test_dashboard_messages.py checks the
app); it reports a choice with its own message (e.g. `FleetTable.Selected`), which the screen
turns into a request to the app. Import each widget from its own module.
"""
