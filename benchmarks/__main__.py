"""``python -m benchmarks``: measure the port tools and serve tasks against their baselines.

Run from the repository root with the project's Python (``nox -s bench`` does). Prints a
table per comparison as it completes, then every target met or missed; writes JSON and
a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import report, scenarios
from benchmarks.load import ListenerLoad
from benchmarks.machine import machine_info, precompile
from benchmarks.results import Comparison
from benchmarks.timing import Spawner

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "latest.json"
DEFAULT_RUNS, QUICK_RUNS = 15, 5


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 0,1000,5000") from None
    if not values or any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers >= 0")
    return values


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(scenarios.SCENARIOS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a comma-separated list of {', '.join(scenarios.SCENARIOS)}"
        )
    return names


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1")
    return int(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--loads",
        type=_counts,
        default=[0, 1000, 5000],
        help="listener loads (default 0,1000,5000)",
    )
    parser.add_argument(
        "--processes", type=_positive, default=200, help="processes holding a load (default 200)"
    )
    parser.add_argument("--runs", type=_positive, help=f"runs per command (default {DEFAULT_RUNS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs per command")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="JSON file (a .md is written next to it)",
    )
    parser.add_argument(
        "--only", type=_names, default=list(scenarios.SCENARIOS), help="e.g. list,check"
    )
    args = parser.parse_args(argv)
    args.runs = args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Run:
    """Runs the selected scenarios, collecting results and errors, printing as it goes."""

    def __init__(self, args: argparse.Namespace, document: dict[str, Any]) -> None:
        self.args = args
        self.document = document
        self.comparisons: list[Comparison] = []

    def scenario(self, name: str, action: Callable[[], Comparison | list[Comparison]]) -> None:
        """Run one scenario; an error is reported and the next scenario still runs."""
        if name not in self.args.only:
            return
        try:
            found = action()
        except Exception as error:  # one broken scenario must not lose the others
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            self.document["errors"].append({"scenario": name, "error": detail})
            print(f"error in {name}: {detail}\n", flush=True)
            return
        for comparison in found if isinstance(found, list) else [found]:
            self.comparisons.append(comparison)
            floor = report.floor_mib(self.document)
            print(report.render_comparison(comparison, floor) + "\n", flush=True)

    def all(self, ctx: scenarios.Context) -> None:
        if {"list", "check"} & set(self.args.only):
            for listeners in self.args.loads:
                print(f"-- starting {listeners} listeners over <= {self.args.processes} processes")
                with ListenerLoad(listeners, self.args.processes) as load:
                    self.scenario("list", lambda: scenarios.compare_list(ctx, load))
                    self.scenario("check", lambda: scenarios.compare_check(ctx, load))
        self.scenario("invoke", lambda: scenarios.compare_invoke(ctx))
        self.scenario("cleanup", lambda: scenarios.compare_cleanup(ctx))
        self.scenario("serve", lambda: scenarios.compare_serve(ctx))
        self.scenario("plugin", lambda: scenarios.compare_plugin(ctx))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: every finally runs
    os.chdir(ROOT)
    precompile(ROOT)
    tools = {name: scenarios.find_tool(name) for name in ("ss", "lsof", "fuser")}
    for name, path in tools.items():
        if path is None:
            print(f"{name}: skipped (not installed)")
    with Spawner() as spawner:
        return _run(args, tools, scenarios.Context(root=ROOT, runs=args.runs, spawner=spawner))


def _run(args: argparse.Namespace, tools: dict[str, str | None], ctx: scenarios.Context) -> int:
    """Run everything, then print and write the results (also after Ctrl-C)."""
    document: dict[str, Any] = {
        "schema": 1,
        "started_at": _now(),
        "finished_at": None,
        "interrupted": False,
        "arguments": {
            "loads": args.loads,
            "processes": args.processes,
            "runs": args.runs,
            "warmup": ctx.warmup,
            "only": args.only,
        },
        "machine": {**machine_info(tools), "rss_floor_kib": ctx.spawner.floor_kib},
        "comparisons": [],
        "errors": [],
    }
    run = Run(args, document)
    print(report.render_text(document, []) + "\n", flush=True)
    status = 0
    try:
        run.all(ctx)
    except KeyboardInterrupt:
        document["interrupted"] = True
        print("interrupted: everything started was stopped; writing partial results")
        status = 130
    document["finished_at"] = _now()
    document["comparisons"] = [comparison.as_dict() for comparison in run.comparisons]
    document["targets"] = [
        dict(zip(report.TARGET_HEADERS, row, strict=True))
        for row in report.target_rows(run.comparisons)
    ]
    print("=" * 79)
    print(report.render_text(document, run.comparisons))
    markdown = report.write(document, run.comparisons, args.output)
    print(f"\nwrote {args.output} and {markdown}")
    if document["errors"] and not status:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
