"""engine/runtime.py: the cores a process may use, the allocator setting."""
import subprocess
import sys

from engine.runtime import tune_allocator, usable_cores


def test_usable_cores_follow_the_affinity_mask():
    """A process pinned to one core (as `taskset` or a container pins it) counts one core."""
    code = (
        "import os; os.sched_setaffinity(0, {0}); "
        "from engine.runtime import usable_cores; print(usable_cores())"
    )
    pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert pinned.stdout.strip() == "1"
    assert usable_cores() >= 1


def test_tune_allocator_applies_on_glibc():
    assert tune_allocator() is True
