"""A tiny headless-Chromium driver over the DevTools protocol (aiohttp websocket), for the browser tests.

`Browser` keeps one tab open across pages (so cookies persist, e.g. a console login): `open` a URL, `submit` a form
by script and wait for the next page, `evaluate` an expression, take a full-page `screenshot`. It collects console
errors, uncaught exceptions, failed loads and the URL of every request the pages make. `render` is the one-page
shortcut. Chromium runs with the flags this machine needs (no sandbox as root, no background networking: the
network is closed).

Example:
    >>> with Browser() as browser:                                   # doctest: +SKIP
    ...     browser.open("http://127.0.0.1:8090/console/login")
    ...     browser.evaluate("document.title")
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

CHROMIUM = os.environ.get("CDP_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--remote-debugging-port=0", "--window-size=1280,900"]


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)
    value: Any = None
    screenshot: bytes = b""


def available() -> bool:
    return os.path.exists(CHROMIUM)


def render(url: str, script: str, *, timeout: float = 60.0) -> PageResult:
    """Load ``url``, run ``script`` (an expression returning JSON-able data), screenshot the whole page."""
    with Browser(timeout=timeout) as browser:
        browser.open(url)
        value = browser.evaluate(script)
        return PageResult(list(browser.console_errors), value, browser.screenshot())


class Browser:
    """One Chromium with one tab, driven synchronously (each call runs the DevTools exchange to completion)."""

    def __init__(self, *, timeout: float = 60.0, width: int = 1280):
        self.timeout, self.width = timeout, width
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self.statuses: dict[str, int] = {}

    # ---- lifecycle ----
    def __enter__(self) -> "Browser":
        self._profile = tempfile.TemporaryDirectory(prefix="cdp-chromium-")
        self._proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._loop = asyncio.new_event_loop()
        try:
            port = _port(self._profile.name, self._proc, self.timeout)
            self._run(self._connect(port))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if getattr(self, "_ws", None) is not None:
                self._run(self._close())
        finally:
            self._loop.close()
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._profile.cleanup()

    # ---- actions ----
    def open(self, url: str) -> None:
        """Navigate and wait for the page's load event."""
        self._run(self._navigate(lambda: self._call("Page.navigate", url=url)))

    def submit(self, script: str) -> None:
        """Run ``script`` (which submits a form or follows a link) and wait for the page it leads to."""
        self._run(self._navigate(lambda: self._call("Runtime.evaluate", expression=script)))

    def evaluate(self, script: str) -> Any:
        answer = self._run(self._call("Runtime.evaluate", expression=script, returnByValue=True))
        if "exceptionDetails" in answer:
            raise RuntimeError(f"script failed: {answer['exceptionDetails'].get('text')}")
        return answer.get("result", {}).get("value")

    def screenshot(self) -> bytes:
        """A PNG of the whole page (up to 12,000 pixels high)."""
        async def shoot() -> bytes:
            metrics = await self._call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            await self._call("Emulation.setDeviceMetricsOverride", width=self.width,
                             height=int(min(size["height"], 12000)), deviceScaleFactor=1, mobile=False)
            shot = await self._call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            await self._call("Emulation.clearDeviceMetricsOverride")
            return base64.b64decode(shot["data"])

        return self._run(shoot())

    # ---- DevTools plumbing ----
    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(coro, self.timeout))

    async def _connect(self, port: int) -> None:
        import aiohttp

        self._http = aiohttp.ClientSession()
        targets: list[dict[str, Any]] = []
        for _ in range(100):
            async with self._http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = [t for t in json.loads(await response.text()) if t.get("type") == "page"]
            if targets:
                break
            await asyncio.sleep(0.05)
        self._ws = await self._http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self._ids = iter(range(1, 1_000_000))
        self._pending: dict[int, asyncio.Future] = {}
        self._loaded: asyncio.Future | None = None
        self._reader = asyncio.ensure_future(self._read())
        for domain in ("Runtime", "Log", "Page", "Network"):
            await self._call(f"{domain}.enable")

    async def _close(self) -> None:
        self._reader.cancel()
        await self._ws.close()
        await self._http.close()

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                self.console_errors.append(" ".join(str(a.get("value", a.get("description")))
                                                    for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                self.console_errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                self.console_errors.append(params["entry"].get("text", ""))
            elif method == "Network.requestWillBeSent":
                self.requests.append(params["request"]["url"])
            elif method == "Network.responseReceived" and params.get("type") == "Document":
                self.statuses[params["response"]["url"]] = params["response"]["status"]
            elif method == "Page.loadEventFired" and self._loaded is not None and not self._loaded.done():
                self._loaded.set_result(True)

    async def _call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._ws.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
        answer = await future
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def _navigate(self, start: Any) -> None:
        self._loaded = asyncio.get_running_loop().create_future()
        answer = await start()
        if "exceptionDetails" in answer:
            raise RuntimeError(f"script failed: {answer['exceptionDetails'].get('text')}")
        await self._loaded
        await asyncio.sleep(0.3)  # let late console messages arrive


def _port(profile: str, proc: subprocess.Popen, timeout: float) -> int:
    marker = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        if os.path.exists(marker):
            text = open(marker).read().split()
            if text:
                return int(text[0])
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")
