"""The alarm banner: one line on every main screen, red while anything waits for a dispatcher."""

from __future__ import annotations

from textual.widgets import Static

from central.dashboard.state import AlarmState, banner
from central.dashboard.text import plain


class AlarmBanner(Static):
    """Says how many alarms wait to be acknowledged and names the worst of them."""

    def show(self, alarms: AlarmState) -> None:
        text, severity = banner(alarms)
        self.update(plain(text))
        self.set_class(severity >= 4, "-emergency")
        self.set_class(severity == 3, "-alarm")
        self.set_class(0 <= severity <= 2, "-warning")
        self.set_class(severity < 0, "-quiet")
