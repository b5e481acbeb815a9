"""The `unihm` command: one CLI for the whole suite.

Packages add subcommands without this module knowing them: each declares an entry point in the
``unihm.commands`` group whose object is ``register(subparsers) -> None``; ``register`` adds a
sub-parser and sets ``func`` (called with the parsed namespace, returns the exit code).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from unihm_core import __version__

ENTRY_POINT_GROUP = "unihm.commands"


def register_doctor(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check that everything UniHM needs is installed and found",
        description="Check Python, torch, rclpy and its RMW, our interfaces, control_msgs, "
                    "the assets folder and the libraries of each stage. Exit code 1 when "
                    "something required is missing.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(args: argparse.Namespace) -> int:
        from unihm_core.doctor import report, run_checks

        return report(run_checks(), as_json=args.json)

    parser.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unihm",
        description="UniHM for ROS 2: language-conditioned dexterous manipulation.")
    parser.add_argument("--version", action="version", version=f"unihm {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not take the CLI down
            print(f"unihm: warning: command '{ep.name}' could not be loaded ({e})",
                  file=sys.stderr)
            continue
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("unihm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
