"""The demo driven as a user drives it: `python demo.py` started, its API asked, and its page opened in a
headless Chromium from the system's packages (apt-get install chromium chromium-driver) through Selenium,
pointed at that browser and its driver so that Selenium Manager never downloads one. Used by the demo's
tests, demo/screenshots.py and demo/timings.py."""
import http.client
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def start_demo(*args, timeout=120):
    """`python demo.py ARGS` (on a free port unless ARGS name one): (process, url) once the URL is printed,
    and the seconds that took."""
    start = time.perf_counter()
    log = tempfile.TemporaryFile(mode="w+")  # its stderr: read when it fails
    process = subprocess.Popen([sys.executable, str(REPO / "demo.py"), *args], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=log, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    url = re.search(r"http://\S+/", line)
    if url is None:
        process.kill()
        process.wait()
        log.seek(0)
        raise RuntimeError(f"demo.py {' '.join(args)} did not start: {line}{log.read()[-2000:]}")
    process.log = log
    return process, url.group(0), time.perf_counter() - start


def stop(process):
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Client:
    """Requests to the demo at `url`: get/post return (status, JSON); raw sends bytes as they are."""

    def __init__(self, url):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def raw(self, method, path, body=b"", headers=None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            headers = headers or {}
            connection.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
            for k, v in {"Content-Length": str(len(body)), **headers}.items():
                connection.putheader(k, v)
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type"), response.read()
        finally:
            connection.close()

    def get(self, path, headers=None):
        status, kind, body = self.raw("GET", path, headers=headers)
        return status, json.loads(body) if kind == "application/json" else body

    def post(self, path, body, headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, kind, answer = self.raw("POST", path, data, {"Content-Type": "application/json",
                                                             **(headers or {})})
        return status, json.loads(answer)


def chromium(width=1280, height=1000):
    """A headless Chromium (Selenium's webdriver.Chrome) of the given window size."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: not installed "
                                "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def wait_for(driver, condition, timeout=30):
    """condition(driver)'s first true value, polled; a timeout says what the page shows instead."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    redrawn = [StaleElementReferenceException]  # an element read as the page replaced it: read again
    try:
        return WebDriverWait(driver, timeout, 0.05, redrawn).until(lambda d: condition(d))
    except TimeoutException:
        messages = [m.text for m in driver.find_elements("css selector", ".message") if m.is_displayed()]
        raise AssertionError(f"the page did not get there in {timeout} s; it says: {messages}") from None
