"""`busfleet can ...`: decode candump logs, watch a live bus, simulate a bus-FMS gateway."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from protocols.j1939.decode import Dm1, Dtc, J1939Decoder, Signals, Vin

INTERFACES = ("socketcan", "virtual", "udp_multicast")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `can` command group."""
    group = sub.add_parser(
        "can",
        help="bus-FMS (J1939) CAN tools: decode logs, watch a bus, simulate a gateway",
        description="Read the vehicle's bus-FMS gateway (J1939 over CAN): decode candump logs, "
        "watch a live bus, or simulate a gateway that sends a drive.",
    )
    cmds = group.add_subparsers(dest="can_command", metavar="SUBCOMMAND", required=True)

    dec = cmds.add_parser(
        "decode",
        help="decode a candump log to JSON lines",
        description="Decode a candump log (`candump -L` format, `(ts) iface ID#DATA`) and print "
        "one JSON object per understood message: t, pgn, sa, name, spn (SPN number -> physical "
        "value, n/a and error values left out), plus dtcs for DM1 and vin for VI.",
    )
    dec.add_argument("file", metavar="FILE", help="candump log file, or - for standard input")
    dec.add_argument(
        "--stats", action="store_true", help="print the decoder's counters to stderr at the end"
    )
    dec.set_defaults(func=run_decode)

    watch = cmds.add_parser(
        "watch",
        help="print decoded frames from a live CAN bus",
        description="Open a CAN bus with python-can and print each decoded message as a JSON "
        "line until Ctrl-C (or --seconds / --count).",
    )
    watch.add_argument("--interface", choices=INTERFACES, default="socketcan", help="backend")
    watch.add_argument("--channel", default="can0", help="channel, e.g. can0 (default: can0)")
    watch.add_argument("--seconds", type=float, help="stop after this many seconds")
    watch.add_argument("--count", type=int, help="stop after this many decoded messages")
    watch.set_defaults(func=run_watch)

    sim = cmds.add_parser(
        "sim",
        help="simulate a bus-FMS gateway (same as `busfleet sim can`)",
        description="Send the frames of a simulated drive onto a CAN bus and/or write them to a "
        "candump log, with optional faults.",
    )
    add_sim_arguments(sim)
    sim.set_defaults(func=run_sim)


# --- decode and watch -------------------------------------------------------------------------


def _dtc(d: Dtc) -> dict[str, int | None]:
    return {"spn": d.spn, "fmi": d.fmi, "occurrence": d.occurrence}


def message_dict(msg: Signals | Dm1 | Vin) -> dict[str, Any]:
    """JSON-ready form of a decoded message (SPN keys become strings)."""
    from protocols.j1939.decode import Dm1, Signals

    out: dict[str, Any] = {"t": msg.t, "pgn": msg.pgn, "sa": msg.sa, "name": msg.name}
    if isinstance(msg, Signals):
        out["spn"] = {str(k): v for k, v in msg.spn.items()}
        if msg.errors:
            out["errors"] = sorted(msg.errors)
        if msg.telltales:
            out["telltales"] = {str(k): v for k, v in msg.telltales.items()}
    elif isinstance(msg, Dm1):
        out["spn"] = {}
        lamps = msg.lamps
        out["lamps"] = {
            "mil": lamps.mil,
            "red_stop": lamps.red_stop,
            "amber_warning": lamps.amber_warning,
            "protect": lamps.protect,
        }
        out["dtcs"] = [_dtc(d) for d in msg.dtcs]
    else:
        out["spn"] = {}
        out["vin"] = msg.text
    return out


def _decode_stream(lines: Iterable[str], decoder: J1939Decoder) -> int:
    """Print the decoded messages of candump lines; return how many lines were not frames."""
    from protocols.j1939.candump import parse_candump

    skipped = 0
    for line in lines:
        frame = parse_candump(line)
        if frame is None or not frame.extended:
            skipped += line.strip() != ""
            continue
        for msg in decoder.decode(frame.can_id, frame.data, frame.t):
            sys.stdout.write(json.dumps(message_dict(msg)) + "\n")
    return skipped


def run_decode(args: argparse.Namespace) -> int:
    """Decode a candump log to JSON lines on stdout."""
    from protocols.j1939.decode import J1939Decoder

    decoder = J1939Decoder()
    if args.file == "-":
        skipped = _decode_stream(sys.stdin, decoder)
    else:
        try:
            with open(args.file, encoding="utf-8", errors="replace") as fh:
                skipped = _decode_stream(fh, decoder)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            print(f"busfleet can decode: {exc}", file=sys.stderr)
            return 2
    if args.stats:
        s = decoder.stats
        print(
            f"frames={s.frames} decoded={s.decoded} unknown_pgn={s.unknown_pgn} "
            f"malformed={s.malformed} transport={s.transport} bam_completed={s.bam_completed} "
            f"bam_aborted={s.bam_aborted} lines_skipped={skipped}",
            file=sys.stderr,
        )
    return 0


def run_watch(args: argparse.Namespace) -> int:
    """Print decoded messages from a live bus (python-can Bus + Notifier)."""
    import threading

    import can

    from protocols.j1939.decode import J1939Decoder

    decoder = J1939Decoder()
    done = threading.Event()
    printed = 0

    def on_message(msg: can.Message) -> None:
        nonlocal printed
        if not msg.is_extended_id or msg.is_error_frame or msg.is_remote_frame or done.is_set():
            return
        for decoded in decoder.decode(msg.arbitration_id, bytes(msg.data), msg.timestamp):
            print(json.dumps(message_dict(decoded)), flush=True)
            printed += 1
            if args.count is not None and printed >= args.count:
                done.set()
                return

    try:
        bus = can.Bus(interface=args.interface, channel=args.channel)
    except (can.CanError, OSError, ValueError) as exc:
        print(
            f"busfleet can watch: cannot open {args.interface} {args.channel}: {exc}",
            file=sys.stderr,
        )
        return 2
    notifier = can.Notifier(bus, [on_message])
    try:
        done.wait(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        notifier.stop()
        bus.shutdown()
    return 0


# --- simulator (also used by `busfleet sim can`) ----------------------------------------------


def _dtc_arg(text: str) -> Dtc:
    from protocols.j1939.decode import Dtc

    parts = text.split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected SPN:FMI[:OCCURRENCE], got {text!r}")
    return Dtc(nums[0], nums[1], nums[2] if len(nums) == 3 else 1)


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the CAN simulator: where to send, how long, which faults."""
    out = parser.add_argument_group("output (at least one)")
    out.add_argument("--interface", choices=INTERFACES, help="python-can backend to send on")
    out.add_argument("--channel", default="can0", help="CAN channel (default: can0)")
    out.add_argument("--log", metavar="FILE", help="also write the frames as a candump log")
    drive = parser.add_argument_group("drive")
    drive.add_argument("--seconds", type=float, default=60.0, help="length of the drive (60)")
    drive.add_argument("--hz", type=float, default=10.0, help="gateway cycles per second (10)")
    drive.add_argument("--speed-kmh", type=float, default=30.0, help="cruising speed (30)")
    drive.add_argument("--start", type=float, help="unix time of the first frame (default: now)")
    drive.add_argument("--sa", type=lambda s: int(s, 0), default=0, help="source address (0)")
    drive.add_argument("--vin", help="send this VIN by TP.BAM now and then")
    drive.add_argument(
        "--fast",
        action="store_true",
        help="do not pace cycles in real time (default with --log only)",
    )
    faults = parser.add_argument_group("faults")
    faults.add_argument("--na-values", action="store_true", help="send every PGN as all 0xFF")
    faults.add_argument("--error-values", action="store_true", help="send in-band error values")
    faults.add_argument("--silent", action="store_true", help="send nothing at all")
    faults.add_argument("--burst-fps", type=int, help="pad each cycle up to this many frames")
    faults.add_argument(
        "--dtc",
        type=_dtc_arg,
        action="append",
        default=[],
        metavar="SPN:FMI[:OC]",
        help="an active DTC in DM1 (repeat for several: sent by TP.BAM)",
    )


def run_sim(args: argparse.Namespace) -> int:
    """Run the simulated gateway for a placeholder drive; return an exit status."""
    import time
    from itertools import islice

    from hw_sim.can_sim import CanSimulator, Faults, cycle_frames, placeholder_drive
    from protocols.j1939.candump import format_candump_line

    if args.interface is None and args.log is None:
        print("busfleet: give --interface and/or --log", file=sys.stderr)
        return 2
    if args.hz <= 0 or args.seconds < 0:
        print("busfleet: --hz must be > 0 and --seconds >= 0", file=sys.stderr)
        return 2
    faults = Faults(
        na_values=args.na_values,
        error_values=args.error_values,
        silent=args.silent,
        burst_fps=args.burst_fps,
        dm1=list(args.dtc),
    )
    start = time.time() if args.start is None else args.start
    cycles = int(args.seconds * args.hz)
    drive = islice(placeholder_drive(start, speed_kmh=args.speed_kmh, hz=args.hz), cycles)
    realtime = args.interface is not None and not args.fast
    sent = 0
    with contextlib.ExitStack() as stack:
        sim: CanSimulator | None = None
        if args.interface is not None:
            import can

            try:
                bus = can.Bus(interface=args.interface, channel=args.channel)
            except (can.CanError, OSError, ValueError) as exc:
                print(
                    f"busfleet: cannot open {args.interface} {args.channel}: {exc}", file=sys.stderr
                )
                return 2
            stack.callback(bus.shutdown)
            sim = CanSimulator(bus, faults, args.sa, vin=args.vin)
        log = stack.enter_context(open(args.log, "w", encoding="ascii")) if args.log else None
        wall0 = time.monotonic()
        try:
            for i, truth in enumerate(drive):
                frames = cycle_frames(truth, sa=args.sa, faults=faults, vin=args.vin, cycle=i)
                if realtime and (delay := i / args.hz - (time.monotonic() - wall0)) > 0:
                    time.sleep(delay)
                if sim is not None:
                    sim.send_frames(frames)
                if log is not None:
                    step = 1.0 / args.hz / (len(frames) + 1)  # keeps a cycle's frames in order
                    for k, (ident, data) in enumerate(frames):
                        line = format_candump_line(truth.t + k * step, args.channel, ident, data)
                        log.write(line + "\n")
                sent += len(frames)
        except KeyboardInterrupt:
            pass
    print(f"busfleet: {sent} frames in {cycles} cycles", file=sys.stderr)
    return 0
