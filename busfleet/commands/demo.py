"""`busfleet demo`: the whole system on one machine."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="broker, central and simulated buses on Cairns routes, with the dashboard",
        description="Start a broker (mosquitto if installed, else an embedded one), the central "
        "service and N simulated buses driving Cairns routes (each a real agent on simulated GPS "
        "and CAN), then open the dispatcher dashboard. Central imports the Cairns feed mapped "
        "onto today and publishes it; the buses get it from central and drive trips running "
        "now; central also plays a playlist of generated ads on every bus, sends a passenger "
        "message and diverts bus-01's route a minute in. The URLs of bus-01's passenger display, "
        "driver terminal and Wi-Fi portal are printed at start (--open opens them). Ctrl-C (or "
        "q) stops everything.",
    )
    p.add_argument("--buses", type=int, default=5, help="number of simulated buses (default 5)")
    p.add_argument(
        "--headless",
        action="store_true",
        help="no dashboard: run --seconds, then print one JSON line of figures (buses_seen, "
        "positions_stored, stops_passed, timetable_version, buses_on_timetable, "
        "max_abs_delay_s, plays_stored, messages_shown, diversions_active, urls, errors)",
    )
    p.add_argument(
        "--seconds", type=float, default=30.0, help="how long a headless demo runs (default 30)"
    )
    p.add_argument("--rate", type=float, default=1.0, help="GPS rate of each bus in Hz (1-10)")
    p.add_argument(
        "--workdir", type=Path, help="keep databases and logs here (default: a temporary directory)"
    )
    p.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="the MQTT broker: mosquitto if installed, else the embedded one (auto, the "
        "default), or either of them by name (embedded: amqtt in a child process, MQTT 3.1.1)",
    )
    p.add_argument(
        "--open",
        dest="open_browser",
        action="store_true",
        help="open bus-01's passenger display, driver terminal and Wi-Fi portal in the browser",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from busfleet.demo import run_headless, run_interactive

    if args.buses < 1:
        raise SystemExit("busfleet demo: --buses must be at least 1")
    if args.headless:
        return run_headless(
            args.buses, args.seconds, args.workdir, args.rate, args.broker, args.open_browser
        )
    return run_interactive(args.buses, args.workdir, args.rate, args.broker, args.open_browser)
