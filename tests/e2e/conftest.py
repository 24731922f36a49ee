"""Fixtures for the browser tests: ``streamlit run app.py`` on a free port with the test session's
private cache, and a Chromium with a fresh profile per page (a separate browser session each)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from browser_driver import BROWSER_ARGS, CHROMIUM, HEIGHT, NO_RAW_NAV, ROOT, STEP_MS, WIDTH


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def playwright_api():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    return sync_api


class Server:
    """``streamlit run app.py`` on a free port with the test session's private artefact cache."""

    def __init__(self, cache: str, log: Path) -> None:
        self.cache, self.log, self.proc, self.url = cache, log, None, ""

    def start(self) -> str:
        port = _free_port()
        env = {**os.environ, "DELTAINF_CACHE": self.cache, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                 "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
                 "--server.fileWatcherType", "none"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self.url
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc = None


@pytest.fixture(scope="module")
def server(playwright_api, cache_dir, tmp_path_factory):
    srv = Server(os.environ.get("DELTAINF_E2E_CACHE") or cache_dir, tmp_path_factory.mktemp("e2e-log") / "server.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser(playwright_api):
    """``open(url)``: a page in a new browser with a fresh profile (a separate 'browser session')."""
    profiles, contexts = [], []
    with playwright_api.sync_playwright() as p:
        def open_page(url: str):
            profile = tempfile.mkdtemp(prefix="deltainf-chromium-")
            profiles.append(profile)
            ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                       args=BROWSER_ARGS, viewport={"width": WIDTH, "height": HEIGHT},
                                                       accept_downloads=True)
            contexts.append(ctx)
            ctx.set_default_timeout(STEP_MS)
            ctx.add_init_script(NO_RAW_NAV)
            pg = ctx.new_page()
            pg.goto(url)
            return pg

        yield open_page
        for ctx in contexts:
            ctx.close()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(browser, server):
    return browser(server.url)
