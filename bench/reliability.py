"""`python -m bench reliability`: the live server against hostile clients, churn and faults.

Runs the test suites that attack a real server on loopback (tests/test_server_hostile.py with
test_server_boundary.py, _fuzz, _churn, _faults) in a child pytest, with more fuzzing cases than
CI runs, and reports per suite: cases tried, failures, the server process's memory before and
after, and the frame rate of the viewer watching another session meanwhile. `--quick`: CI's
sizes (a smoke run, not figures).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from matplotlib.figure import Figure

from bench.report import REPO_ROOT, write_report

SUITES = {
    "hostile": ["tests/test_server_hostile.py", "tests/test_server_boundary.py"],
    "fuzz": ["tests/test_server_fuzz.py"],
    "churn": ["tests/test_server_churn.py"],
    "faults": ["tests/test_server_faults.py"],
}
TARGET_FPS = 30
FUZZ_LINE = re.compile(r"cases by outcome: (\{.*?\}), memory (\d+)->(\d+) MiB, viewer ([\d.]+) fps")
CHURN_LINE = re.compile(r"churn: (\d+) cycles in (\d+) s Counter\((\{.*?\})\).*memory (\d+)->(\d+) MiB")


def run(args: argparse.Namespace) -> None:
    fuzz_examples, churn_cycles = (30, 40) if args.quick else (300, 200)
    env = {
        **os.environ,
        "FUZZ_EXAMPLES": str(fuzz_examples),
        "CHURN_CYCLES": str(churn_cycles),
        "PYTHONPATH": str(REPO_ROOT),
    }
    rows = []
    for suite, paths in SUITES.items():
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "junit.xml"
            command = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-s",
                "-p",
                "no:cacheprovider",
                f"--junitxml={junit}",
                *paths,
            ]
            output = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True).stdout
            cases = ElementTree.parse(junit).getroot().iter("testcase")
            tests = failed = 0
            for case in cases:
                tests += 1
                failed += any(child.tag in ("failure", "error") for child in case)
        row = {
            "suite": suite,
            "tests": tests,
            "tests_failed": failed,
            "cases": tests,
            "memory_before_mib": None,
            "memory_after_mib": None,
            "viewer_fps": None,
        }
        if suite == "fuzz":
            found = FUZZ_LINE.findall(output)
            row["cases"] = sum(sum(ast.literal_eval(outcomes).values()) for outcomes, *_ in found)
            if found:
                row["memory_before_mib"] = min(int(f[1]) for f in found)
                row["memory_after_mib"] = max(int(f[2]) for f in found)
                row["viewer_fps"] = min(float(f[3]) for f in found)
        elif suite == "churn" and (match := CHURN_LINE.search(output)):
            row["cases"] = int(match[1])
            row["memory_before_mib"], row["memory_after_mib"] = int(match[4]), int(match[5])
        rows.append(row)
        print(f"{suite}: {row}", flush=True)

    notes = (
        f"`python -m bench reliability{' --quick' if args.quick else ''}`: the suites that attack a real "
        f"server on loopback, {fuzz_examples} hypothesis examples per fuzzing target, {churn_cycles} "
        "churn clients. cases: fuzz cases (offers, bodies and headers, websocket messages, say text) or "
        "churn clients that got a session; tests_failed: tests that failed (a test fails on a case that "
        "is not a clean 4xx or protocol close, a leak, or a watching viewer below its floor); viewer_fps: "
        f"the slowest watching viewer during fuzzing (target {TARGET_FPS}). Memory: the server's process "
        "(pytest's) RSS before and after."
    )

    def plot(fig: Figure) -> None:
        ax = fig.add_subplot()
        names = [r["suite"] for r in rows]
        ax.barh(names, [r["cases"] for r in rows], label="cases tried")
        ax.barh(names, [r["tests_failed"] for r in rows], color="red", label="tests failed")
        ax.set_xlabel("cases")
        ax.legend()

    write_report(
        "reliability",
        rows,
        title="Live server: hostile clients, churn, faults",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )
