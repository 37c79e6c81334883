"""A hub served by uvicorn in a thread, and the Chromium helpers the console tests share."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from hub.config import load_settings
from hub.runtime import Hub
from tests.peers import free_port, peer_missing, port_open

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "PASSWORD",
    "SCREENSHOTS",
    "RunningHub",
    "english_labels",
    "launch_browser",
    "login",
    "require_browser_peers",
    "row",
    "serve_hub",
    "video_advances",
    "wait_js",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The test cannot click "enable sound" before every reload.
    "--autoplay-policy=no-user-gesture-required",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
PASSWORD = "Shift-Lead-2026!x"
T = TypeVar("T")


class _Server(uvicorn.Server):
    """uvicorn without signal handlers (it runs in a worker thread here)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningHub:
    """A hub and its HTTP server on their own event loop in a thread."""

    hub: Hub
    loop: asyncio.AbstractEventLoop
    base_url: str
    port: int
    _server: _Server | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the hub's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=timeout)

    async def start_http(self) -> None:
        """(On the hub's loop) serve the hub's app on its port until `stop_http`."""
        config = uvicorn.Config(
            self.hub.app(), host="127.0.0.1", port=self.port, log_config=None, lifespan="off"
        )
        server = _Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                await self._task  # raises why it could not start
            await asyncio.sleep(0.05)

    async def stop_http(self) -> None:
        """(On the hub's loop) stop the HTTP server; open WebSockets are closed, the hub runs on."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None and task is not None:
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), 3)
            except TimeoutError:
                # A stream handler notices its closed socket only at its next send
                # (keepalive); do not wait for that.
                server.force_exit = True
                await task


@contextlib.contextmanager
def serve_hub(tmp_path: Path, prefix: str, **sections: Any) -> Iterator[RunningHub]:
    """A hub (SQLite in tmp_path, MQTT on the machine's Mosquitto under `prefix`) and its
    HTTP server on a free port; `sections` override settings sections (patrol=..., live=...)."""
    port = free_port()
    mqtt = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 1883,
        "topic_prefix": prefix,
        "client_id": f"gw-console-test-{uuid.uuid4().hex[:8]}",
        "device_refresh_s": 0.2,
    }
    mqtt.update(sections.pop("mqtt", {}))
    settings = load_settings(
        None, data_dir=tmp_path / "hub", http={"port": port}, mqtt=mqtt, **sections
    )
    ready = threading.Event()
    stop = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with Hub(settings) as hub:
            running = RunningHub(hub, asyncio.get_running_loop(), f"http://127.0.0.1:{port}", port)
            await running.start_http()
            box["running"] = running
            ready.set()
            while not stop.is_set():  # noqa: ASYNC110 - set from the test's thread
                await asyncio.sleep(0.1)
            await running.stop_http()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=thread_main, name="hub-under-test", daemon=True)
    thread.start()
    ready.wait(60)
    if "error" in box:
        raise box["error"]
    try:
        yield box["running"]
    finally:
        stop.set()
        thread.join(30)


def require_browser_peers() -> None:
    """Chromium and the machine's Mosquitto, or skip (fail in CI)."""
    if not CHROMIUM.exists():
        peer_missing("chromium", "apt-get install -y chromium chromium-driver")
    if not port_open("127.0.0.1", 1883):
        peer_missing("mosquitto", "nothing listens on 127.0.0.1:1883")


@contextlib.asynccontextmanager
async def launch_browser() -> AsyncIterator[Any]:
    """Debian's Chromium through Playwright (never a downloaded browser)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


async def login(page: Any, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the login form and wait for the live queue."""
    await page.goto(base_url + "/")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-submit")
    await page.wait_for_selector("body[data-view=queue]")
    await page.wait_for_selector("#conn[data-state=up]")


async def wait_js(page: Any, expression: str, timeout_s: float) -> None:
    """Poll a page expression (page.wait_for_function evaluates strings, which the
    console's Content-Security-Policy forbids; page.evaluate goes through DevTools)."""
    async with asyncio.timeout(timeout_s):
        while not await page.evaluate(expression):  # noqa: ASYNC110 - state in the browser
            await asyncio.sleep(0.1)


def row(device_id: str) -> str:
    """The queue row of an alarm of `device_id`."""
    return f"#queue-body tr:has-text('{device_id}')"


#: Visible texts with Latin letters and no Chinese, outside ids, names, codes and free text
#: (elements marked data-raw) — what an operator of the zh-CN console must never read.
_ENGLISH_LABELS_JS = """
() => {
  const chinese = /[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]/;
  const latinOnly = (s) => /[A-Za-z]/.test(s) && !chinese.test(s);
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const el = node.parentElement;
    if (!text || !el || !latinOnly(text)) continue;
    if (el.closest("[data-raw], script, style, title")) continue;
    const option = el.closest("option");
    const shown = (option ? option.parentElement.closest("select") : el).checkVisibility();
    const where = `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${el.className}`;
    if (shown) found.push(`${where}: ${text}`);
  }
  for (const el of document.querySelectorAll("input[placeholder], button[title], [aria-label]")) {
    if (el.closest("[data-raw]") || !el.checkVisibility()) continue;
    for (const value of [el.getAttribute("placeholder"), el.getAttribute("title")]) {
      if (value && latinOnly(value)) found.push(`${el.tagName.toLowerCase()}[attr]: ${value}`);
    }
  }
  return found;
}
"""


async def english_labels(page: Any) -> list[str]:
    """Latin-only labels the page shows (ids, names and free text excluded)."""
    found: list[str] = await page.evaluate(_ENGLISH_LABELS_JS)
    return found


async def video_advances(page: Any, selector: str, timeout_s: float = 20) -> tuple[int, int]:
    """Wait until the video at `selector` has a picture and its time moves on; its size."""
    await wait_js(page, f"(document.querySelector({selector!r})?.videoWidth || 0) > 0", timeout_s)
    first = await page.evaluate(f"document.querySelector({selector!r}).currentTime")
    await wait_js(
        page, f"document.querySelector({selector!r}).currentTime > {first} + 0.5", timeout_s
    )
    size: list[int] = await page.evaluate(
        f"[document.querySelector({selector!r}).videoWidth,"
        f" document.querySelector({selector!r}).videoHeight]"
    )
    return size[0], size[1]
