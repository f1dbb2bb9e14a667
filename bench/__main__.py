"""`python -m bench NAME|all [--quick]`: run benchmarks and write their reports to bench/results/."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from bench.report import RESULTS_DIR
from bench.summary import write_summary
from engine.runtime import tune_allocator

# Benchmark name -> module defining `run(args)`. Adding a benchmark is one line here.
BENCHMARKS = {
    "render": "bench.render",
    "features": "bench.features",
    "quality-features": "bench.features_quality",
    "quality": "bench.quality",
    "r2v": "bench.r2v",
    "latency": "bench.latency",
    "sessions": "bench.sessions",
    "avatar-build": "bench.avatar_build",
    "soak": "bench.soak",
    "fit": "bench.fit",
    "lipsync": "bench.lipsync",
    "reliability": "bench.reliability",
    "cluster": "bench.cluster",
}
# Longer than 10 minutes in full: `all` runs their --quick version unless given --full.
LONG = {"soak", "avatar-build"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=[*BENCHMARKS, "all"], help="benchmark to run")
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run, not figures")
    parser.add_argument("--full", action="store_true", help="with all: the long benchmarks in full too")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where reports go")
    args = parser.parse_args(argv)
    tune_allocator()
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    failed = []
    for name in names:
        print(f"== bench {name}", flush=True)
        # Imported only when run, so one benchmark's heavy dependencies never slow another.
        module = importlib.import_module(BENCHMARKS[name])
        short = args.name == "all" and name in LONG and not args.full
        try:
            module.run(argparse.Namespace(**{**vars(args), "quick": args.quick or short}))
        except Exception as exc:  # `all` goes on with the others and reports the failure at the end
            if len(names) == 1:
                raise
            print(f"bench {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
    if args.name == "all":
        print(f"  wrote {write_summary(args.results_dir)}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
