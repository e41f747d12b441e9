"""agent.toml's [update] section: where releases come from and how a new one must prove itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UpdateSection:
    # central's TUF repository (`{repo_url}/metadata/`, `{repo_url}/targets/`); empty: no updates
    repo_url: str = ""
    trusted_root: str = ""  # the root.json the bus trusts (provisioning); needed with repo_url
    health_timeout_s: float = 300.0  # a new version must prove itself healthy within this
    # "HH:MM-HH:MM" (local time): switch to a new release only in this window; empty: any time.
    # Never while a trip runs, window or not.
    maintenance_window: str = ""
