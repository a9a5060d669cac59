"""The `fer-perception` command line: one subcommand per module in :mod:`fer_perception.commands`.

Each command module defines ``NAME``, ``HELP`` (one line), optionally ``DESCRIPTION`` (the text ``--help``
shows) and ``EPILOG`` (examples), ``add_arguments(parser)`` and ``run(args) -> int``. Modules import their heavy
dependencies (torch, rosbags) inside ``run`` so that ``fer-perception --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import List, Optional

from fer_perception import __version__
from fer_perception.errors import FerPerceptionError

ORDER = ["demo", "sample", "replay", "evaluate", "train", "convert", "synth", "export", "info"]

DESCRIPTION = """\
Facial expression, age and gender perception for ROS 2 - without needing ROS for offline work.

Typical first steps:
  fer-perception demo                       make the built-in sample, replay it with the demo weights, evaluate
  fer-perception info                       versions, compute device, supported event message types
  fer-perception replay BAG -o OUT          run the live node's pipeline over a rosbag, write results to a bag
  fer-perception evaluate OUT --labels CSV  accuracy, confusion matrices, latency, a Markdown/PNG report

Every subcommand has its own --help with examples.
"""


def _command_modules():
    import fer_perception.commands as pkg

    mods = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods[mod.NAME] = mod
    ordered = [mods.pop(n) for n in ORDER if n in mods]
    return ordered + [mods[n] for n in sorted(mods)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-perception", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"fer-perception {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            epilog=getattr(mod, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    import logging

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args._run(args) or 0)
    except FerPerceptionError as exc:
        if args.verbose:
            raise
        print(f"fer-perception {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
