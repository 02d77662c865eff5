"""Take the README's screenshots: the Label tab on the default model, on a desktop and on a phone.

    python docs/screenshots.py            # writes docs/label.png and docs/label-phone.png

Starts app.py on a fresh database in a temporary folder, writes short guidelines, labels three pairs with the
keyboard and shoots the page in Debian's chromium (Playwright, `executable_path`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradio_client import Client
from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
GUIDELINES = """Prefer the answer that is **correct**, then the one that is **shorter**.

- Both wrong? Press 4 (both bad).
- Can you write a better one? Press e."""


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="prefloop-shots-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, str(REPO / "app.py"), "--no-browser", "--port", str(port), "--db", str(work / "db.duckdb"),
           "--runs", str(work / "runs"), "--exports", str(work / "exports")]  # fmt: skip
    app = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        while True:
            try:
                client = Client(url, verbose=False)
                break
            except Exception:
                time.sleep(1)
        client.predict(GUIDELINES, api_name="/save_guidelines")
        with sync_playwright() as p:
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.set_default_timeout(300_000)
            page.goto(url, wait_until="load")
            page.wait_for_selector("#prompt .prompt")
            for key in "123":
                before = page.inner_text("#vote-status")
                page.keyboard.press(key)
                page.wait_for_function(
                    "(b) => document.querySelector('#vote-status').innerText !== b"
                    " && document.querySelector('#prompt .prompt') && !document.querySelector('#prompt .pending')",
                    arg=before,
                )
            page.screenshot(path=str(DOCS / "label.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
            phone.set_default_timeout(300_000)
            phone.goto(url, wait_until="load")
            phone.wait_for_selector("#prompt .prompt")
            phone.screenshot(path=str(DOCS / "label-phone.png"))
            browser.close()
    finally:
        os.killpg(app.pid, signal.SIGINT)
        app.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {DOCS / 'label.png'} and {DOCS / 'label-phone.png'}")


if __name__ == "__main__":
    main()
