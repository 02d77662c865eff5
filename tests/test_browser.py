"""The app in a real browser: Debian's chromium driven by Playwright, as a person uses it.

Labels with the keyboard alone, undoes a vote, edits an answer into the chosen one, sees the keys' help and
the message for a key pressed with no pair on screen; then starts a round and watches it, sees the new version
serve, compares, exports and downloads the file; votes in the Arena with its keys; and checks the phone
layout. Screenshots (desktop and phone) go to $PREFLOOP_SCREENSHOTS, or the test's temporary folder.

Skips, saying what to install, where no chromium can be found (CI installs it: see .ci/run).
"""

import contextlib
import http.server
import json
import os
import shutil
import threading
import types
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
gradio_client = pytest.importorskip("gradio_client")
CHROMIUM = os.environ.get("PREFLOOP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "no chromium to drive: install Debian's (apt-get install chromium) or set PREFLOOP_CHROMIUM",
        allow_module_level=True,
    )

from helpers import fake_round, launch  # noqa: E402 (after the skips)

from storage import Store  # noqa: E402

pytestmark = pytest.mark.slow  # launches the app, a round's process or a benchmark

ARGS = ("--queue-depth", "1", "--sample-batch", "1")  # one pair at a time: a vote waits for the next one
DESKTOP, PHONE = {"width": 1366, "height": 900}, {"width": 390, "height": 844}
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


def serve(tiny_model_dir, work: Path):
    for client, proc in launch(tiny_model_dir, work, args=ARGS):
        client.predict(0.8, 0.95, 24, api_name="/apply_settings")
        yield client.src, work, proc


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    """An app the tests share; none of them relies on what another did in it."""
    yield from serve(tiny_model_dir, tmp_path_factory.mktemp("browser"))


@pytest.fixture
def served_alone(tiny_model_dir, tmp_path):
    """An app for one test, which stops it to read its database."""
    yield from serve(tiny_model_dir, tmp_path)


@contextlib.contextmanager
def tracker():
    """A server on another origin that counts the requests it gets, like a tracking pixel's."""
    hits = types.SimpleNamespace(count=0)

    class Pixel(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the handler's name)
            hits.count += 1
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pixel)
    hits.url = f"http://127.0.0.1:{server.server_port}/pixel.gif"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hits
    finally:
        server.shutdown()


def shots() -> Path:
    folder = Path(os.environ.get("PREFLOOP_SCREENSHOTS") or Path(os.environ.get("TMPDIR", "/tmp")) / "prefloop-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, url: str, viewport: dict):
    page = browser.new_page(viewport=viewport, accept_downloads=True)
    page.set_default_timeout(WAIT_MS)
    page.goto(url, wait_until="load")  # not networkidle: the app's timers keep the network busy
    page.wait_for_selector("#prompt .prompt")
    return page


def status_text(page) -> str:
    """#vote-status's message (not gradio's status tracker inside the same block)."""
    return page.evaluate("document.querySelector('#vote-status [data-testid=markdown]')?.innerText || ''")


def press_and_wait(page, key: str, expect: str) -> None:
    """Press `key` with nothing focused; wait for a new #vote-status saying `expect` and the next pair."""
    before, left = status_text(page), page.inner_text("#left-view")
    page.keyboard.press(key)
    try:  # a new message, and a new pair in place (the vote's last update: its completions changed)
        page.wait_for_function(
            "([before, left, expect]) => {"
            " const s = document.querySelector('#vote-status [data-testid=markdown]')?.innerText || '';"
            " return s !== before && s.includes(expect) && document.querySelector('#prompt .prompt')"
            " && !document.querySelector('#prompt .pending')"
            " && document.querySelector('#left-view').innerText !== left; }",
            arg=[before, left, expect],
        )
    except sync_api.TimeoutError:
        focus = page.evaluate(
            "(document.activeElement.tagName || '') + '#' + (document.activeElement.id || '') + ' hint: '"
            " + (document.getElementById('key-hint')?.textContent || 'none')"
        )
        pytest.fail(f"after {key!r} no {expect!r} (focus: {focus}); the page says:\n{page.inner_text('body')}")


def test_labeling_with_the_keyboard_alone_undo_and_edit(browser, served_alone):
    url, work, proc = served_alone
    page = open_page(browser, url, DESKTOP)
    for key, choice in zip("12s3", ["left", "right", "skip", "tie"], strict=True):  # no mouse
        press_and_wait(page, key, f"({choice})")
    press_and_wait(page, "u", "Undid vote")  # the last vote (a tie) is withdrawn, its pair back on screen
    page.keyboard.press("?")
    assert page.is_visible("#keys-help"), "? shows the keys"
    page.keyboard.press("?")
    page.keyboard.press("e")
    page.wait_for_selector("#edit-panel textarea", state="visible")
    box = page.locator("#edit-panel textarea")
    box.fill("A careful, correct and friendly answer written by a person.")
    box.press("Control+Enter")
    page.wait_for_function(
        "document.querySelector('#vote-status [data-testid=markdown]').innerText.includes('Saved your answer')"
    )
    assert not page.is_visible("#edit-panel textarea"), "the edit box closes"
    assert page.evaluate("document.activeElement === document.body"), "focus is not left in a textbox"
    # A key with no pair on screen: vote, then press again at once, while the one-pair queue samples anew
    # (slowly: long completions).
    gradio_client.Client(url, verbose=False).predict(0.8, 0.95, 1024, api_name="/apply_settings")
    page.keyboard.press("1")
    page.wait_for_selector("#prompt .pending")
    page.keyboard.press("2")
    page.wait_for_selector("#key-hint", state="visible")
    assert "No pair on screen" in page.inner_text("#key-hint")
    page.wait_for_function("!document.querySelector('#prompt .pending')")
    gradio_client.Client(url, verbose=False).predict(0.8, 0.95, 24, api_name="/apply_settings")
    page.screenshot(path=str(shots() / "label-desktop.png"), full_page=True)
    counters = page.inner_text("#counters")
    assert "Labeled today" in counters and "by you" in counters
    # Whatever reaches the page, it loads no image from elsewhere (no tracking pixels): its policy forbids it.
    with tracker() as hits:
        page.evaluate(f"document.querySelector('#prompt').insertAdjacentHTML('beforeend', '<img src=\"{hits.url}\">')")
        page.wait_for_timeout(1000)
    assert hits.count == 0, "the browser fetched an image from another origin"
    # Long answers scroll inside their boxes, together.
    page.evaluate(
        "for (const id of ['left-view', 'right-view']) document.getElementById(id).insertAdjacentHTML("
        "'beforeend', '<p>a long answer</p>'.repeat(200))"
    )
    page.evaluate("document.getElementById('left-view').scrollTop = 400")
    page.wait_for_function("document.getElementById('right-view').scrollTop > 300")
    page.close()
    # The votes in DuckDB say what the browser did.
    proc.kill()
    proc.wait()
    with Store(work / "loop.duckdb") as store:
        assert len(store.judgements.withdrawn()) == 1, "the undone vote"
        judged = store.judgements.list()
        human = [store.generations.get(j.left_generation_id).author for j in judged].count("human")
        assert human == 1, "the edit is a pair with the human answer chosen"


def test_a_round_from_the_browser_serves_compares_and_exports(browser, served):
    url, work, _ = served
    page = open_page(browser, url, DESKTOP)
    for _ in range(8):
        press_and_wait(page, "1", "Saved vote #")
    page.get_by_role("tab", name="Train").click()
    assert page.is_visible("#no-round-yet"), "no empty plot before the first round"
    page.get_by_role("button", name="Start round").click()
    try:
        page.wait_for_function("document.body.innerText.includes('Serving round_001')")  # the round served
    except sync_api.TimeoutError:
        pytest.fail(f"no round_001 serving; the page says:\n{page.inner_text('body')[-2500:]}")
    assert "done" in page.inner_text("body")
    page.get_by_role("tab", name="Compare").click()
    version_b = page.get_by_label("Version B")
    version_b.fill("round_001")
    version_b.press("Enter")
    page.get_by_label("Prompt", exact=True).fill("Say hello.")
    page.get_by_role("button", name="Generate both").click()
    out_a, out_b = page.get_by_label("A", exact=True), page.get_by_label("B", exact=True)
    page.wait_for_function(
        "() => [...document.querySelectorAll('textarea')].filter(t => t.value.length > 0).length >= 3"
    )  # the prompt and both versions' answers
    assert out_a.input_value() and out_b.input_value()
    page.get_by_role("tab", name="Train").click()
    page.get_by_role("button", name="Export labels").click()
    link = page.locator("a[download]").first
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    rows = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    assert rows and {"prompt", "chosen", "rejected"} <= set(rows[0])
    page.close()


@pytest.fixture(scope="module")
def arena_served(tiny_model_dir, tmp_path_factory):
    """An app of its own with a finished round to battle the base (made before the app opens the database)."""
    work = tmp_path_factory.mktemp("browser-arena")
    with Store(work / "loop.duckdb") as store:
        fake_round(store, tiny_model_dir, work / "round_001", init_lora_weights=False)
    for client, proc in launch(tiny_model_dir, work, args=("--backend", "eager")):
        client.predict(0.8, 0.95, 24, api_name="/apply_settings")
        yield client.src, work, proc


def arena_reveal(page) -> str:
    return page.evaluate("document.querySelector('#arena-reveal [data-testid=markdown]')?.innerText || ''")


def test_arena_votes_with_the_keys_reveal_the_names_and_are_stored(browser, arena_served):
    url, work, proc = arena_served
    page = open_page(browser, url, DESKTOP)
    page.get_by_role("tab", name="Arena").click()
    page.wait_for_selector("#arena-prompt .prompt")  # latest vs previous: round_001 vs base, a battle on screen
    page.keyboard.press("5")  # not an arena key: nothing happens
    for key, said in (("1", "you voted A."), ("2", "you voted B."), ("3", "you voted a tie."), ("4", "both bad.")):
        before, a_side = arena_reveal(page), page.inner_text("#arena-a-view")
        assert "round_001" not in a_side and "round_001" not in page.inner_text("#arena-status"), "blind"
        page.keyboard.press(key)
        try:  # the reveal (both names), then the next battle, blind again
            page.wait_for_function(
                "([before, said, a]) => { const s = document.querySelector('#arena-reveal [data-testid=markdown]')"
                "?.innerText || ''; return s !== before && s.includes(said)"
                " && document.querySelector('#arena-prompt .prompt')"
                " && !document.querySelector('#arena-prompt .pending')"
                " && document.querySelector('#arena-a-view').innerText !== a; }",
                arg=[before, said, a_side],
            )
        except sync_api.TimeoutError:
            hint = page.evaluate("document.getElementById('key-hint')?.textContent || 'none'")
            pytest.fail(f"after {key!r} no {said!r}; the reveal says {arena_reveal(page)!r}, the key hint {hint!r}")
        reveal = arena_reveal(page)
        assert "round_001" in reveal and "base" in reveal, reveal
    page.close()
    proc.kill()
    proc.wait()
    with Store(work / "loop.duckdb") as store:
        voted = [b for b in store.battles.list() if b.winner is not None]
    assert len(voted) == 4, "each key press stored one vote, the stray key none"
    assert [b.winner for b in voted][2:] == ["tie", "both_bad"]
    assert {b.winner for b in voted[:2]} <= {"a", "b"}


def test_on_a_phone_the_completions_stack_and_the_votes_stay_in_reach(browser, served):
    url, _, _ = served
    page = open_page(browser, url, PHONE)
    left, right = page.locator("#left-view").bounding_box(), page.locator("#right-view").bounding_box()
    assert right["y"] >= left["y"] + left["height"] - 1, "stacked, not side by side"
    assert left["width"] > PHONE["width"] * 0.7
    vote = page.locator("#vote-left").bounding_box()
    assert vote["y"] + vote["height"] <= PHONE["height"], "the vote buttons are on screen without scrolling"
    page.screenshot(path=str(shots() / "label-phone.png"))
    page.close()
