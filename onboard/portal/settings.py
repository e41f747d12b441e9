"""The [portal] section of agent.toml: the captive portal's addresses, firewall and limits.

It lives in the portal room so that the firewall backends can name their settings without
importing onboard/config.py, which imports the firewall table for its names.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PortalSection"]


@dataclass(frozen=True, slots=True)
class PortalSection:
    """The passenger Wi-Fi captive portal (onboard/portal/); deploy/README.md explains each key."""

    enabled: bool = False
    listen_host: str = "0.0.0.0"
    listen_port: int = 8480  # passengers' TCP 80 is redirected here
    address: str = "10.42.0.1"  # the bus on the passenger network (IPv4): http://address/
    hostname: str = ""  # a DNS name for the portal (needed for TLS); empty: the address
    firewall: str = "null"  # onboard/portal/firewalls.py: null (nothing enforced) | nftables
    passenger_if: str = "wlan0"
    uplink_if: str = "wwan0"  # passengers are masqueraded out of it; empty: no NAT here
    nft_table: str = "busfleet_portal"
    nft_template: str = ""  # empty: deploy/nftables/portal.nft of this installation's source
    walled_garden: str = ""  # comma-separated IPv4 addresses/networks open before acceptance
    blocked: str = ""  # comma-separated IPv4 addresses/networks passengers never reach
    prelogin_idle_s: float = 600.0
    idle_s: float = 1800.0  # 0: no idle timeout
    session_s: float = 14400.0
    rate_kbytes: int = 0  # per client and direction, kB/s; 0: unlimited
    volume_mb: float = 0.0  # per session; 0: unlimited
    max_clients: int = 100
    feedback_per_hour: int = 5  # per client
    operator: str = ""  # named on the terms page
    sync_every_s: float = 5.0  # firewall counters read and timeouts checked this often
    stats_every_s: float = 900.0  # aggregate statistics to central this often
    tls_port: int = 8443  # HTTPS for the RFC 8908 API when tls_cert is set
    tls_cert: str = ""
    tls_key: str = ""
