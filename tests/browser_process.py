"""A headless browser as a child process for the browser tests (Chromium's DevTools, Firefox's
WebDriver BiDi): started in its own process group, its debugging port read once the browser has
written it, and the whole group killed on exit, always."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

POLL_S = 0.1


@contextlib.asynccontextmanager
async def browser_process(
    name: str,
    argv: list[str],
    log: Path,
    port: Callable[[], int | None],
    timeout_s: float,
    env: dict[str, str] | None = None,
) -> AsyncIterator[int]:
    """Runs `argv` (output to `log`) and yields `port()` once it is not None, within timeout_s."""
    with log.open("wb") as output:
        browser = await asyncio.create_subprocess_exec(
            *argv, stdout=output, stderr=output, start_new_session=True, env=env
        )
    try:
        async with asyncio.timeout(timeout_s):
            while (found := port()) is None:
                if browser.returncode is not None:
                    raise RuntimeError(
                        f"{name} exited with status {browser.returncode}:\n{log.read_text()[-2000:]}"  # noqa: ASYNC240 (the log read once, when the browser died)
                    )
                await asyncio.sleep(POLL_S)
        yield found
    finally:
        # its own process group: this ends the browser and every helper process it started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        await browser.wait()
