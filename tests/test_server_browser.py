"""The web page in headless Chromium: load it, type text, press Play, and hear (well, measure) the audio.

Chromium is driven over the DevTools protocol. Without Chromium the test is skipped, naming the reason
(``pytest -rs`` lists it in the summary), except in continuous integration (``CI=true``), where it
fails: install Debian's package (``apt-get install -y chromium``) or point ``TACOGLOW_CHROMIUM`` at a
Chromium binary.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tacoglow.serve import EventLog, create_app

from test_server import load_voice, running_server

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


def chromium_binary() -> str:
    binary = os.environ.get("TACOGLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        reason = ("Chromium is not installed, so the web page cannot be tested: run "
                  "'apt-get install -y chromium' (Debian) or set TACOGLOW_CHROMIUM to a Chromium binary")
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(reason + " (CI is set, so a missing browser fails the run)")
        pytest.skip(reason)
    return binary


class DevTools:
    """The few DevTools protocol calls this test needs, over one page's websocket."""

    def __init__(self, url: str):
        try:
            import websocket
        except ImportError:
            pytest.fail("the browser test needs the websocket-client package: pip install websocket-client")
        self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, limit: float = 60.0):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        player = self.evaluate('JSON.stringify(window.tacoglowPlayer)')
        raise AssertionError(f"the page never satisfied {expression}; player: {player}")


@pytest.fixture
def browser():
    profile = tempfile.mkdtemp(prefix="tacoglow-chromium-")
    process = subprocess.Popen([chromium_binary(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            if process.poll() is not None:
                pytest.fail(f"Chromium exited at start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        else:
            pytest.fail("Chromium did not open its DevTools port within 30 s")
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            pages = [t for t in json.load(response) if t["type"] == "page"]
        devtools = DevTools(pages[0]["webSocketDebuggerUrl"])
        yield devtools
        devtools.socket.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def test_page_plays_streamed_speech_and_draws_the_alignment(browser):
    events = EventLog()
    with running_server(create_app(load_voice, events=events)) as url:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=url + "/")
        browser.wait_until("document.readyState === 'complete'"
                           " && document.getElementById('vocoder').options.length > 0")
        assert browser.evaluate("document.getElementById('vocoder').value") == "waveglow"
        browser.evaluate("document.getElementById('text').value = 'Hello there. This is the page test. Goodbye!';"
                         "document.getElementById('seed').value = '4'")
        box = browser.evaluate("JSON.stringify(document.getElementById('play').getBoundingClientRect())")
        box = json.loads(box)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):  # a real click: the user gesture that lets audio start
            browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        browser.wait_until("['ended', 'error'].includes(window.tacoglowPlayer.state)")
        player = browser.evaluate("JSON.parse(JSON.stringify(window.tacoglowPlayer))")
        caption = browser.evaluate("document.getElementById('caption').textContent")

    assert player["state"] == "ended" and player["error"] is None, player
    assert player["chunks"] == 3 and player["scheduledSeconds"] > 0.5
    # The audio clock ran through every scheduled sentence, and the signal reached the output graph.
    assert player["playedSeconds"] >= player["scheduledSeconds"] and player["peak"] > 0.01
    assert player["alignmentDrawn"] and "Sentence 3 of 3" in caption and "Goodbye!" in caption
    (job,) = {e["job"] for e in events.find("queued")}
    assert [e["index"] for e in events.find("chunk", job=job)] == [0, 1, 2] and events.find("finished", job=job)


def test_page_asks_for_the_key_of_a_keyed_server_and_sends_it(browser):
    events = EventLog()
    with running_server(create_app(load_voice, events=events, api_key="page-key")) as url:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=url + "/")
        browser.wait_until("document.readyState === 'complete' && !document.getElementById('key-row').hidden")
        assert "needs an API key" in browser.evaluate("document.getElementById('status').textContent")
        assert browser.evaluate("document.getElementById('vocoder').options.length") == 0
        browser.evaluate("const key = document.getElementById('key'); key.value = 'page-key';"
                         "key.dispatchEvent(new Event('change'))")
        browser.wait_until("document.getElementById('vocoder').options.length > 0")
        assert browser.evaluate("document.getElementById('status').textContent") == "Ready."
        browser.evaluate("document.getElementById('text').value = 'Hello.'")
        box = json.loads(browser.evaluate("JSON.stringify(document.getElementById('play').getBoundingClientRect())"))
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        browser.wait_until("['ended', 'error'].includes(window.tacoglowPlayer.state)")
        player = browser.evaluate("JSON.parse(JSON.stringify(window.tacoglowPlayer))")
    assert player["state"] == "ended" and player["error"] is None and player["chunks"] == 1, player
    assert events.find("finished")  # the synthesis request carried the key
