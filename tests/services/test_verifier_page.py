"""The counter page in headless Chromium (Debian's ``chromium``), driven over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: no extra Python package, no open port).

Staff unlock the page with the API key, choose a policy, show the request QR (which must scan
back to the ``openid4vp://`` URI), a wallet answers, and the verdict appears; then the offline
flow: a challenge, pasted QR text, the verdict. Screenshots are kept in ``out/test-artifacts/``
(git-ignored). Skips with a reason when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from civic.clock import FixedClock
from civic.encoding import json_dumps, json_loads
from civic.errors import CivicError
from civic.qr import decode_png, pack
from tests.services.registry_harness import ROOT
from tests.services.verifier_deploy import API_KEY, AppServer, Deployment, Wallet
from verifier.app import build_services, create_app
from verifier.settings import load_runtime

CHROMIUM = Path(os.environ.get("CIVIC_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "out" / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is absent (apt-get install chromium to run the counter page test)",
)


class DevTools:
    """A minimal Chrome DevTools Protocol client over the browser's fd 3/4 pipe."""

    def __init__(self, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)  # chromium will not create it itself
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def as_fd_3_and_4() -> None:
            # In the child, after fork: the protocol pipe is fd 3 (in) and fd 4 (out). Python's
            # own descriptors are close-on-exec, so close_fds=False leaks nothing else.
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self._process = subprocess.Popen(  # noqa: S603 -- fixed binary and arguments
            [
                str(CHROMIUM),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "--window-size=1280,1100",
                "about:blank",
            ],
            preexec_fn=as_fd_3_and_4,  # noqa: PLW1509 -- a test, no threads forking here
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def call(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        session = kw.get("session", self.session)
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json_dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise AssertionError("the browser closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        decoded: dict[str, Any] = json_loads(message)
        return decoded

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url}, session=None)["targetId"]
        attached = self.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, session=None
        )
        self.session = attached["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        # A new target starts on about:blank: wait for *this* page to have loaded.
        self.wait(f"location.href === {json_dumps(url)} && document.readyState === 'complete'")

    def eval(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def screenshot(self, name: str) -> bytes:
        png = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / name).write_bytes(png)
        return png

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.call("Browser.close", session=None)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


def _scan_screen(browser: DevTools, name: str) -> str:
    """The QR code on screen, read from a screenshot (retried while the page paints)."""
    for _ in range(20):
        try:
            return decode_png(browser.screenshot(name))
        except CivicError:
            time.sleep(0.1)
    raise AssertionError("no QR code readable on the page")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    devtools = DevTools(tmp_path / "profile")
    yield devtools
    devtools.close()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_counter_page(tmp_path: Path, browser: DevTools) -> None:
    deployment = Deployment.create(tmp_path / "verifier")
    city = deployment.city
    services = build_services(load_runtime(deployment.settings()), now=FixedClock(city.now))
    wallet = Wallet(city, {"urn:civic:vct:residency:1": city.issue()})
    with AppServer(create_app(services), deployment.port), httpx.Client(timeout=10) as client:
        browser.open(deployment.url + "/")
        assert browser.eval("document.getElementById('counter').hidden") is True
        browser.eval(
            f"document.getElementById('api-key').value = {json_dumps(API_KEY)};"
            "document.getElementById('key-form').requestSubmit(); true"
        )
        browser.wait("document.getElementById('policy').options.length === 3")
        browser.eval(
            "const s = document.getElementById('policy'); s.value = 'bar-entry';"
            "s.dispatchEvent(new Event('change')); true"
        )
        assert "19 or older" in browser.eval(
            "document.getElementById('policy-purpose').textContent"
        )

        # Online: the QR on screen scans back to the openid4vp:// URI; a wallet answers.
        browser.eval("document.getElementById('new-request').click(); true")
        uri = browser.wait("document.getElementById('request-uri').textContent")
        browser.wait(
            "(() => { const i = document.getElementById('request-qr');"
            " return i.complete && i.naturalWidth > 0; })()"
        )
        assert _scan_screen(browser, "counter-request.png") == uri
        request_uri = parse_qs(urlsplit(uri).query)["request_uri"][0]
        request = wallet.request_object(client, request_uri)
        assert wallet.respond(client, request).json() == {"result": "valid"}
        assert browser.wait("document.getElementById('verdict-result').textContent") == "valid"
        assert browser.wait("document.getElementById('request-status').textContent") == "answered"
        claims = browser.eval("document.getElementById('verdict-claims').innerText")
        assert "true" in claims
        browser.screenshot("counter-online-verdict.png")

        # Offline: a challenge, the wallet's QR text pasted, the verdict.
        browser.eval("document.getElementById('new-challenge').click(); true")
        nonce = browser.wait("document.getElementById('challenge-nonce').textContent")
        text = pack(city.present(city.issue(), nonce=nonce, at=city.now))
        browser.eval(
            "document.getElementById('verdict-result').textContent = '';"
            f"document.getElementById('qr-text').value = {json_dumps(text)};"
            "document.getElementById('offline-form').requestSubmit(); true"
        )
        result = browser.wait("document.getElementById('verdict-result').textContent")
        browser.screenshot("counter-offline-verdict.png")
        assert result == "valid", browser.eval("document.getElementById('verdict').innerText")

        # The same QR again: the page shows the replay as invalid with its reason.
        browser.eval("document.getElementById('new-challenge').click(); true")
        browser.wait("!document.getElementById('challenge').hidden")
        browser.eval(
            "document.getElementById('verdict-result').textContent = '';"
            f"document.getElementById('qr-text').value = {json_dumps(text)};"
            "document.getElementById('offline-form').requestSubmit(); true"
        )
        assert browser.wait("document.getElementById('verdict-result').textContent") == "invalid"
        assert "kb_jwt_nonce_mismatch" in browser.eval(
            "document.getElementById('verdict-reason').textContent"
        )
    deployment.close()
