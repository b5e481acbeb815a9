"""``unihm bench NAME``: every component's benchmark behind one command.

Packages add benchmarks through the ``unihm.benchmarks`` entry-point group; each object is a
callable ``run(quick: bool) -> dict`` that reports progress on stderr and returns its figures.
Absolute times on shared machines are noisy, so every benchmark also measures a baseline in the
same run and reports the ratio. The last line printed with ``--json`` is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib.metadata import entry_points
from typing import Any

ENTRY_POINT_GROUP = "unihm.benchmarks"


def benchmarks() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _print_summary(name: str, result: dict[str, Any]) -> None:
    print(f"benchmark {name}:")
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"  {key}:")
            for sub, val in value.items():
                print(f"    {sub}: {json.dumps(val)}")
        else:
            print(f"  {key}: {json.dumps(value)}")


def register_bench(subparsers: argparse._SubParsersAction) -> None:
    names = sorted(benchmarks())
    parser = subparsers.add_parser(
        "bench", help="run a component benchmark (last line JSON with --json)",
        description=f"Benchmarks: {', '.join(names) or '(none installed)'}.")
    parser.add_argument("name", choices=names, help="which benchmark")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (a smoke run; figures are less stable)")

    def run(args: argparse.Namespace) -> int:
        func = benchmarks()[args.name].load()
        start = time.perf_counter()
        result = func(quick=args.quick)
        result = {"benchmark": args.name, **result,
                  "wall_s": round(time.perf_counter() - start, 2),
                  "machine": {"python": platform.python_version(),
                              "cpu": platform.processor() or platform.machine()}}
        _print_summary(args.name, result)
        if args.json:
            sys.stdout.write(json.dumps(result) + "\n")
        return 0

    parser.set_defaults(func=run)
