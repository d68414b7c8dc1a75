"""Where ``list --all --json`` spends its time under a listener load.

    python -m benchmarks.profiling [--listeners 5000] [--processes 200] [--top 25]

Sets up the load like the benchmark, then runs the command once with ``-X importtime``
(import costs, by cumulative time) and once under ``cProfile`` (sorted by cumulative and
by own time). The profile is kept as ``benchmarks/results/list-all.prof``.
"""

from __future__ import annotations

import argparse
import io
import pstats
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.load import ListenerLoad
from benchmarks.machine import precompile

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [str(ROOT / "utils" / "port_manager.py"), "list", "--all", "--json"]
# The command under cProfile: through main(), which returns, rather than as a program,
# which ends with os._exit before cProfile could write its file.
PROFILED = """
import cProfile, sys
root, output, *words = sys.argv[1:]
sys.path[0] = root
sys.argv = [root + "/utils/port_manager.py", *words]
from utils.port_cli import main
cProfile.run("main()", output)
"""


def import_times(top: int) -> str:
    """The ``-X importtime`` lines with the largest cumulative times."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *COMMAND],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    rows: list[tuple[int, int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(cumulative_us), int(self_us), name.rstrip()))
    total = sum(cumulative for cumulative, _, name in rows if not name.startswith("  "))
    rows.sort(reverse=True)
    lines = [f"imports: {total / 1000:.1f} ms in total (top-level cumulative)"]
    lines.append(f"{'cumulative ms':>14} {'self ms':>8}  module")
    lines += [f"{c / 1000:14.1f} {s / 1000:8.1f}  {name}" for c, s, name in rows[:top]]
    return "\n".join(lines)


def profile(top: int, output: Path) -> str:
    """cProfile of one run, sorted by cumulative time and by own time."""
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", PROFILED, str(ROOT), str(output), *COMMAND[1:]],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    parts = []
    for key in ("cumulative", "tottime"):
        buffer = io.StringIO()
        stats = pstats.Stats(str(output), stream=buffer)
        stats.strip_dirs().sort_stats(key).print_stats(top)
        text = buffer.getvalue()
        parts.append(f"sorted by {key}:\n" + text[text.find("   ncalls") :].rstrip())
    return "\n\n".join(parts)


def wall_time(runs: int = 5) -> str:
    """Plain wall-clock times of the command, for scale."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *COMMAND], cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - start) * 1000)
    return "wall ms: " + ", ".join(f"{value:.0f}" for value in sorted(times))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__)
    parser.add_argument("--listeners", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "list-all.prof"
    )
    args = parser.parse_args(argv)
    precompile(ROOT)
    with ListenerLoad(args.listeners, args.processes) as load:
        print(f"{load.listeners} listeners in {len(load.children)} processes")
        print(wall_time())
        print()
        print(import_times(args.top))
        print()
        print(profile(args.top, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
