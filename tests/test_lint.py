"""Style and types as pyproject.toml sets them: ruff (E, F, W, I, B, ASYNC, UP; 110 columns) on the
code, mypy on engine/, models/ and streaming/. `make test` runs these with the rest."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> list[str]:
    """The tool installed beside this Python (the project's test extra), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return [found]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("folder", ["engine", "models", "bench", "tests", "streaming"])
def test_ruff(folder):
    result = _run([*_tool("ruff"), "check", "--no-cache", folder])
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy():
    result = _run([*_tool("mypy"), "engine", "models", "streaming"])
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
