"""Opens a page in headless Chromium over the DevTools protocol and reports what a
person would see: the page's text, console messages, uncaught exceptions, failed
loads, and a screenshot.

Chromium is driven through --remote-debugging-pipe (messages on file descriptors 3
and 4, each ended by a NUL byte), so nothing but the standard library is needed and
no port is opened.

usage: page_check.py CHROMIUM URL SCREENSHOT.png WAIT_JS EVAL_JS [CLICK_JS]

WAIT_JS is polled until it is true (the page has rendered); CLICK_JS, if given, runs
next (e.g. to switch a view), then WAIT_JS is polled again; EVAL_JS's value is
reported. Prints one JSON object: value, console, exceptions, log, ready.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

TIMEOUT = 60.0


class Browser:
    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp(prefix="tracer-chromium-")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def fds():
            # The protocol's descriptors: the child reads fd 3, writes fd 4.
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.process = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu",
                "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader",
                "--allow-file-access-from-files",
                "--window-size=1600,1000",
                "--user-data-dir=" + self.profile,
                "about:blank",
            ],
            preexec_fn=fds,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        return self.wait_reply(self.next_id)

    def read_message(self, deadline):
        while b"\0" not in self.buffer:
            if time.time() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_child, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the protocol pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def wait_reply(self, message_id):
        deadline = time.time() + TIMEOUT
        while True:
            message = self.read_message(deadline)
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(json.dumps(message["error"]))
                return message.get("result", {})
            self.events.append(message)

    def wait_event(self, method, deadline):
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            message = self.read_message(deadline)
            if message.get("method") == method:
                return message
            self.events.append(message)

    def close(self):
        try:
            self.send("Browser.close")
        except (EOFError, OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def evaluate(browser, session, expression):
    result = browser.send(
        "Runtime.evaluate",
        {"expression": expression, "returnByValue": True, "awaitPromise": True},
        session,
    )
    if "exceptionDetails" in result:
        raise RuntimeError("evaluating %r failed: %s" % (expression, json.dumps(result["exceptionDetails"])))
    return result.get("result", {}).get("value")


def poll(browser, session, expression):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        if evaluate(browser, session, expression):
            return True
        time.sleep(0.25)
    return False


def main():
    chromium, url, screenshot, wait_js, eval_js = sys.argv[1:6]
    click_js = sys.argv[6] if len(sys.argv) > 6 else None
    browser = Browser(chromium)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(domain + ".enable", {}, session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1600, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        browser.send("Page.navigate", {"url": url}, session)
        browser.wait_event("Page.loadEventFired", time.time() + TIMEOUT)
        ready = poll(browser, session, wait_js)
        if ready and click_js:
            evaluate(browser, session, click_js)
            ready = poll(browser, session, wait_js)
        time.sleep(0.5)
        value = evaluate(browser, session, eval_js)
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)
        with open(screenshot, "wb") as out:
            out.write(base64.b64decode(shot["data"]))
        # Let late messages arrive, then collect what the page reported.
        evaluate(browser, session, "new Promise(r => setTimeout(r, 300))")
        console, exceptions, log = [], [], []
        for event in browser.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                console.append({"type": params.get("type"), "text": text})
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                exceptions.append(details.get("exception", {}).get("description") or details.get("text"))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                log.append({"level": entry.get("level"), "text": entry.get("text"), "url": entry.get("url")})
        print(json.dumps({"ready": ready, "value": value, "console": console, "exceptions": exceptions, "log": log}))
    finally:
        browser.close()


if __name__ == "__main__":
    main()
