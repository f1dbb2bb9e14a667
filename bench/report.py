"""What every benchmark shares: timing, machine info, and the report files it writes.

A benchmark measures rows (one dict per case, same keys in every row) and calls `write_report`,
which writes bench/results/NAME.json (rows + machine info), NAME.md (a table) and NAME.png (a plot).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from engine.runtime import usable_cores  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
FRAME_BUDGET_MS = 1000 / 30  # one video frame at 30 fps


@dataclass(frozen=True)
class Timing:
    """Wall-clock milliseconds per call."""

    median_ms: float
    p90_ms: float
    min_ms: float
    repeats: int


def timeit(fn: Callable[[], object], *, warmup: int = 5, repeats: int = 50) -> Timing:
    """Time `fn()` after `warmup` untimed calls. When CUDA is in use, each call is synchronised,
    so the time covers the GPU work and not just its launch."""
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    ms = np.asarray(times)
    return Timing(float(np.median(ms)), float(np.percentile(ms, 90)), float(ms.min()), repeats)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch CPU threads (None: leave as is), then restore the old count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_case(
    case: str,
    fn: Callable[[], object],
    *,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 5,
    repeats: int = 50,
    **extra: object,
) -> dict:
    """Time one case and return its report row: case, device, threads, extra fields, timings."""
    with torch_threads(threads):
        timing = timeit(fn, warmup=warmup, repeats=repeats)
        used_threads = torch.get_num_threads()
    row = {"case": case, "device": device, "threads": used_threads if device == "cpu" else None}
    row.update(extra)
    row.update(asdict(timing))
    print("  " + "  ".join(f"{key}={_format(value)}" for key, value in row.items()), flush=True)
    return row


def machine_info() -> dict:
    """Where the figures were measured."""
    return {
        "cpu": _cpu_model(),
        "cores": usable_cores(),  # those this process may use (its affinity)
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": _git(["rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(_git(["status", "--porcelain", "--untracked-files=no"])),
    }


def write_report(
    name: str,
    rows: list[dict],
    *,
    title: str,
    notes: str = "",
    plot: Callable[[Figure], None] | None = None,
    results_dir: Path = RESULTS_DIR,
) -> list[Path]:
    """Write results_dir/NAME.{json,md,png}; `plot` draws on the figure (default: `plot_timings`).
    Each file appears whole or not at all (written aside, then renamed)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    report = {"name": name, "title": title, "notes": notes, "machine": machine, "results": rows}
    json_path, md_path, png_path = (results_dir / f"{name}.{ext}" for ext in ("json", "md", "png"))
    _write_atomic(json_path, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    _write_atomic(md_path, lambda tmp: tmp.write_text(_markdown(title, notes, rows, machine)))

    fig = plt.figure(figsize=(8, 4.5), layout="constrained")
    if plot is None:
        plot_timings(fig.add_subplot(), rows)
    else:
        plot(fig)
    fig.suptitle(f"{title}\n{_machine_line(machine)}", fontsize=9)
    _write_atomic(png_path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    print(f"  wrote {json_path}, {md_path.name}, {png_path.name}", flush=True)
    return [json_path, md_path, png_path]


def plot_timings(ax: Axes, rows: list[dict], label: Callable[[dict], str] | None = None) -> None:
    """Horizontal bars of median ms per row, whiskers from min to p90, the 30 fps budget marked."""
    label = label or (lambda row: f"{row['case']} ({row['device']})")
    y = np.arange(len(rows))
    median = np.array([row["median_ms"] for row in rows])
    fastest = np.array([row["min_ms"] for row in rows])
    p90 = np.array([row["p90_ms"] for row in rows])
    ax.barh(y, median, xerr=[median - fastest, p90 - median], height=0.5, capsize=3)
    ax.axvline(FRAME_BUDGET_MS, color="tab:red", linestyle="--", linewidth=1, label="30 fps frame")
    ax.set_yticks(y, [f"{label(row)}\n{row['median_ms']:.3g} ms" for row in rows], fontsize=8)
    ax.invert_yaxis()
    # Log scale: GPU and CPU cases differ by orders of magnitude; whole decades keep bars honest.
    ax.set_xscale("log")
    decades = np.log10([fastest.min(), max(p90.max(), FRAME_BUDGET_MS)])
    ax.set_xlim(10 ** np.floor(decades[0]), 10 ** np.ceil(decades[1]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel("ms per call (median; whiskers min..p90)")
    ax.legend(fontsize=8, loc="lower right")


def _markdown(title: str, notes: str, rows: list[dict], machine: dict) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(row.get(key)) for key in columns) + " |" for row in rows]
    lines += ["", _machine_line(machine), ""]
    return "\n".join(lines)


def _machine_line(machine: dict) -> str:
    gpu = f", {machine['cuda_device']}" if machine["cuda_device"] else ""
    commit = machine["git_commit"] or "no commit"
    dirty = " (dirty)" if machine["git_dirty"] else ""
    return (
        f"{machine['cpu']}, {machine['cores']} cores{gpu}; torch {machine['torch']}; "
        f"{machine['date']}; {commit}{dirty}"
    )


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(args: list[str]) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
