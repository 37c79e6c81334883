"""The demo in Chromium as the district operator: 九原区's panic alarms with their pictures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.console_support import (
    SCREENSHOTS,
    launch_browser,
    login,
    require_browser_peers,
    wait_js,
)
from tests.integration.test_demo import ROOT, _Output
from tests.peers import free_port

pytestmark = [pytest.mark.browser, pytest.mark.mqtt, pytest.mark.slow]


def _start_demo(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "hub.cli", "demo", "--data-dir", str(tmp_path / "demo")]
    command += ["--port", str(port), "--first-press", "2", "--press-every", "20", "30"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_district_operator_sees_a_panic_alarm_with_gate_camera_snapshots(
    tmp_path: Path,
) -> None:
    require_browser_peers()
    port = free_port()
    process = _start_demo(tmp_path, port)
    output = _Output(process)
    try:
        console = output.wait_for("console:", timeout=120).split("console:", 1)[1].strip()
        output.wait_for("PRESS", timeout=60)
        async with launch_browser() as browser:
            page = await browser.new_page()
            await login(page, console.rstrip("/"), "district.op", "Jiuyuan-150207!")
            await page.wait_for_selector("#queue-body tr", timeout=60_000)
            await page.click("#queue-body tr")
            await page.wait_for_selector("#detail .media img", timeout=60_000)
            # Every snapshot is a picture the browser could decode (not a broken link).
            await wait_js(
                page,
                "[...document.querySelectorAll('#detail .media img')]"
                ".every(i => i.complete && i.naturalWidth > 0)",
                30,
            )
            pictures = await page.locator("#detail .media img").count()
            text = await page.inner_text("#detail")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await page.locator("#detail .media").scroll_into_view_if_needed()
            await page.screenshot(path=str(SCREENSHOTS / "demo-panic-snapshots.png"))
        assert pictures >= 1
        assert "无抓拍" not in text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close(process)
