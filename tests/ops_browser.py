"""A tiny headless-Chromium driver over the DevTools protocol (aiohttp websocket), for the report's browser test.

It opens a page, collects console errors, uncaught exceptions and failed loads, evaluates a script and takes a
full-page screenshot. Chromium runs with the flags this machine needs (no sandbox as root, no background
networking: the network is closed).
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
    with tempfile.TemporaryDirectory(prefix="cdp-chromium-") as profile:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            port = _port(profile, proc, timeout)
            return asyncio.run(asyncio.wait_for(_drive(port, url, script), timeout))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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


async def _drive(port: int, url: str, script: str) -> PageResult:
    import aiohttp

    result = PageResult()
    async with aiohttp.ClientSession() as http:
        targets = []
        for _ in range(100):
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = [t for t in json.loads(await response.text()) if t.get("type") == "page"]
            if targets:
                break
            await asyncio.sleep(0.05)
        async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 10_000))
            pending: dict[int, asyncio.Future] = {}
            loaded = asyncio.get_running_loop().create_future()

            async def reader() -> None:
                async for message in ws:
                    data = json.loads(message.data)
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data)
                        continue
                    method, params = data.get("method"), data.get("params", {})
                    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                        result.console_errors.append(" ".join(str(a.get("value", a.get("description")))
                                                              for a in params.get("args", [])))
                    elif method == "Runtime.exceptionThrown":
                        result.console_errors.append(params["exceptionDetails"].get("text", "exception"))
                    elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                        result.console_errors.append(params["entry"].get("text", ""))
                    elif method == "Page.loadEventFired" and not loaded.done():
                        loaded.set_result(True)

            async def call(method: str, **params: Any) -> dict[str, Any]:
                message_id = next(ids)
                future = asyncio.get_running_loop().create_future()
                pending[message_id] = future
                await ws.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
                answer = await future
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

            task = asyncio.create_task(reader())
            for domain in ("Runtime", "Log", "Page"):
                await call(f"{domain}.enable")
            await call("Page.navigate", url=url)
            await loaded
            await asyncio.sleep(0.3)  # let late console messages arrive
            evaluated = await call("Runtime.evaluate", expression=script, returnByValue=True)
            result.value = evaluated.get("result", {}).get("value")
            metrics = await call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            await call("Emulation.setDeviceMetricsOverride", width=1280, height=int(min(size["height"], 12000)),
                       deviceScaleFactor=1, mobile=False)
            shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            result.screenshot = base64.b64decode(shot["data"])
            task.cancel()
    return result
