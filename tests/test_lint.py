"""Style and types as pyproject.toml sets them: ruff (E, F, W, I, B, ASYNC, UP; 110 columns) on the
code, mypy on engine/ and models/. `make test` runs these with the rest."""
import re
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


@pytest.mark.parametrize(
    "folder",
    [
        "engine",
        "models",
        "bench",
        "tests",
        pytest.param(
            "streaming", marks=pytest.mark.xfail(strict=False, reason="streaming lint lands with issue 14")
        ),
    ],
)
def test_ruff(folder):
    result = _run([*_tool("ruff"), "check", "--no-cache", folder])
    assert result.returncode == 0, result.stdout + result.stderr


# Type errors mypy still finds in engine/ and models/ (mostly torch modules reached through
# nn.Module attributes and numpy scalars); the count may only go down, to 0.
KNOWN_TYPE_ERRORS = 99


def test_mypy_engine_and_models():
    result = _run([*_tool("mypy"), "engine", "models"])
    found = re.search(r"Found (\d+) errors?", result.stdout)
    count = int(found.group(1)) if found else 0
    assert result.returncode == 0 or found, result.stdout[-5000:] + result.stderr
    assert count <= KNOWN_TYPE_ERRORS, result.stdout[-5000:]


@pytest.mark.xfail(strict=False, reason="streaming lint lands with issue 14")
def test_mypy_streaming():
    result = _run([*_tool("mypy"), "streaming"])
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr
