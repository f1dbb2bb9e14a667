"""bench/results/REPORT.md: every benchmark's report in one table (written by `python -m bench all`).

One row per NAME.json under the results directory: the figures its report leads with and their
targets (the sentences of its notes that name a target, else its first sentence), the command that
made it, the machine it ran on, and links to its table and plot."""

from __future__ import annotations

import json
import re
from pathlib import Path

SENTENCE = re.compile(r"(?<=[.;])\s+(?=[A-Z`(])")
COMMAND = re.compile(r"`(python -m bench [^`]+)`|Command: (python -m bench [\w -]+)")


def headline(notes: str, limit: int = 400) -> str:
    """The sentences of `notes` that name a target (or the first one), cut to `limit` characters."""
    sentences = [s.strip() for s in SENTENCE.split(notes.replace("\n", " ")) if s.strip()]
    chosen = [s for s in sentences if "target" in s.lower()] or sentences[:1]
    text = " ".join(chosen)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def command_of(name: str, notes: str) -> str:
    match = COMMAND.search(notes)
    return (
        next(group for group in match.groups() if group) if match else f"python -m bench {name.split('_')[0]}"
    )


def machine_of(machine: dict) -> str:
    parts = [machine.get("cpu") or machine.get("cpu_model") or "", f"{machine.get('cores')} cores"]
    if machine.get("cuda_device"):
        parts.append(machine["cuda_device"])
    return ", ".join(str(p) for p in parts if p)


def write_summary(results_dir: Path) -> Path:
    """Writes results_dir/REPORT.md from the reports there; returns its path."""
    rows = ["| Benchmark | Figures and targets | Command | Machine | Details |", "|---|---|---|---|---|"]
    for path in sorted(results_dir.glob("*.json")):
        report = json.loads(path.read_text())
        name, notes = path.stem, report.get("notes", "")
        links = [f"[table]({name}.md)"] + (
            [f"[plot]({name}.png)"] if (results_dir / f"{name}.png").exists() else []
        )
        cells = [
            f"**{name}**: {report.get('title', '')}",
            headline(notes),
            f"`{command_of(name, notes)}`",
            machine_of(report.get("machine", {})),
            " ".join(links),
        ]
        rows.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    text = "\n".join(
        [
            "# Benchmark report",
            "",
            "Every benchmark's leading figures beside their targets, from the reports in this directory "
            "(`python -m bench all` runs them all and writes this file; each row links its full table "
            "and plot).",
            "",
            *rows,
            "",
        ]
    )
    out = results_dir / "REPORT.md"
    out.write_text(text)
    return out
