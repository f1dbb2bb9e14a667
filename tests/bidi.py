"""A tiny WebDriver BiDi client for browser tests in Firefox (which speaks BiDi, not the Chrome
DevTools Protocol): launch headless Firefox on a fresh profile, navigate, run scripts before a
page's own, evaluate script, take screenshots. The page object has the same `evaluate` and `screenshot` as
cdp.CdpPage.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from browser_process import browser_process
from ws_commands import CommandChannel

LAUNCH_TIMEOUT_S = 30  # a cold start on a loaded 2-core machine takes several seconds

# user.js of the test profile: media plays and the (fake) microphone opens without a person to
# click; WebRTC connects over loopback with plain addresses; nothing is fetched from the network.
PREFERENCES = {
    "media.autoplay.default": 0,  # allow audible autoplay
    "media.autoplay.blocking_policy": 0,
    "media.navigator.permission.disabled": True,  # getUserMedia without a prompt
    "media.navigator.streams.fake": True,  # a fake microphone (a tone)
    "media.peerconnection.ice.loopback": True,  # offer 127.0.0.1 as an ICE candidate
    "media.peerconnection.ice.obfuscate_host_addresses": False,  # the server resolves no mDNS names
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "extensions.update.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.captive-portal-service.enabled": False,
    "media.gmp-manager.updateEnabled": False,  # no OpenH264 download: VP8 is built in
    "services.settings.server": "http://127.0.0.1:1/",  # remote settings: refused at once, locally
}


def firefox_binary() -> Path | None:
    """Debian's firefox-esr, or a `firefox` on the PATH; None when neither is installed."""
    found = shutil.which("firefox-esr") or shutil.which("firefox")
    return Path(found) if found else None


class BidiError(RuntimeError):
    """The browser answered a command with an error, or the page threw."""


@contextlib.asynccontextmanager
async def firefox(profile: Path) -> AsyncIterator[int]:
    """Headless Firefox on a fresh profile in `profile` (a new directory), showing about:blank;
    yields its WebDriver BiDi port. Killed on exit, always."""
    binary = firefox_binary()
    if binary is None:
        raise FileNotFoundError("firefox is not installed (apt-get install firefox-esr)")
    profile.mkdir()  # noqa: ASYNC240 (a test browser profile folder, made once)
    (profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFERENCES.items())
    )
    port_file = profile / "WebDriverBiDiServer.json"

    def bidi_port() -> int | None:
        try:
            return int(json.loads(port_file.read_text())["ws_port"])
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # not (fully) written yet

    argv = [
        str(binary), "--headless", "--no-remote", "--profile", str(profile),
        "--remote-debugging-port=0",  # a free port, written to WebDriverBiDiServer.json
        "--width=720", "--height=720", "about:blank",
    ]
    env = {**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"}
    async with browser_process(
        "firefox", argv, profile / "firefox.log", bidi_port, LAUNCH_TIMEOUT_S, env
    ) as port:
        yield port


class BidiPage(CommandChannel):
    """The first top-level browsing context (tab) of a browser, driven over one BiDi session."""

    error_type = BidiError
    protocol = "BiDi"
    context = ""

    @staticmethod
    def error_message(reply: dict[str, Any]) -> str | None:
        return f"{reply.get('error')}: {reply.get('message')}" if reply.get("type") == "error" else None

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, http: aiohttp.ClientSession, port: int) -> AsyncIterator[BidiPage]:
        # max_msg_size=0: screenshots are larger than aiohttp's default message limit
        async with http.ws_connect(f"ws://127.0.0.1:{port}/session", max_msg_size=0) as ws:
            page = cls(ws)
            await page.send("session.new", capabilities={})
            tree = await page.send("browsingContext.getTree", maxDepth=0)
            page.context = tree["contexts"][0]["context"]
            yield page

    async def navigate(self, url: str) -> None:
        """Opens `url` in the tab and waits until the page has loaded."""
        await self.send("browsingContext.navigate", context=self.context, url=url, wait="complete")

    async def add_preload_script(self, function: str) -> None:
        """Runs the JavaScript `function` (a declaration) in every page this tab loads from now on,
        before the page's own scripts."""
        await self.send("script.addPreloadScript", functionDeclaration=function, contexts=[self.context])

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises are awaited)."""
        # JSON over the wire rather than BiDi's typed remote values: plain Python values back
        wrapped = f"(async () => JSON.stringify(await ({expression})))()"
        result = await self.send(
            "script.evaluate", expression=wrapped, target={"context": self.context},
            awaitPromise=True, resultOwnership="none",
        )
        if result["type"] == "exception":
            details = result["exceptionDetails"]
            raise BidiError(f"{expression}: {details.get('text')}")
        value = result["result"]
        return json.loads(value["value"]) if value["type"] == "string" else None

    async def screenshot(self, path: Path) -> None:
        result = await self.send("browsingContext.captureScreenshot", context=self.context)
        path.write_bytes(base64.b64decode(result["data"]))  # noqa: ASYNC240 (a screenshot file written once by a test)
