"""The real app, launched as a user would, driven through gradio_client.

Label pairs → votes land in DuckDB → a round trains → the new version serves → compare → export.
"""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")

from helpers import PROMPT, REPO, launch  # noqa: E402 (after the skip)

from ui.views import prompt_html  # noqa: E402

pytestmark = pytest.mark.slow  # launches the app, a round's process or a benchmark


@pytest.fixture(scope="module")
def app(tiny_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("app")
    for client, proc in launch(tiny_model_dir, work):
        yield client, proc, work


def wait_for_round(client) -> tuple[str, str, str]:
    """Poll the Train tab until the round ends; returns (progress, serving, label summary)."""
    for _ in range(300):
        progress, _, _, _, serving, summary = client.predict(api_name="/round_status")
        if any(f"**{state}**" in progress for state in ("done", "failed", "cancelled")):
            break
        time.sleep(0.5)
    return progress, serving, summary


# A small round's settings; /start_round takes DPOConfig fields by name, and any left out keep the Train tab's value.
SMALL = {"learning_rate": 5e-3, "epochs": 1, "batch_size": 4, "lora_r": 8, "lora_alpha": 16, "max_length": 256}


def start_round(client, **fields) -> str:
    return client.predict(**(SMALL | fields), api_name="/start_round")


def label(client, n: int, labeler="tester") -> list[str]:
    """`n` votes as the Label tab casts them: a vote answers with the next pair, which the next vote judges."""
    statuses = []
    prompt, _, _, left, right, status = client.predict(api_name="/next_pair")
    for i in range(n):
        assert prompt.startswith(PROMPT) and isinstance(left, str) and isinstance(right, str)
        statuses.append(status)
        choice = "left" if i % 2 == 0 else "right"
        saved, prompt, _, _, left, right, status = client.predict(labeler, api_name=f"/vote_{choice}")
        assert saved.startswith("Saved vote #")
    return statuses


def test_an_unavailable_backend_stops_the_app_with_what_to_do(tiny_model_dir, tmp_path):
    run = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--model", str(tiny_model_dir), "--db", str(tmp_path / "x.duckdb")]
        + ["--device", "cpu", "--backend", "vllm", "--no-browser"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert run.returncode != 0
    assert "prefloop: The vllm backend needs a CUDA GPU" in run.stderr and "--backend" in run.stderr


def test_bad_input_gets_a_clear_error_in_the_ui(app):
    client, _, _ = app
    with pytest.raises(Exception, match="Prompt is empty"):
        client.predict("   ", api_name="/add_prompt")
    with pytest.raises(Exception, match="Too few new preference pairs"):
        start_round(client, beta=0.1)
    with pytest.raises(Exception, match="beta must be > 0"):  # positionally: the documented order
        client.predict(-1, 5e-3, 1, 4, "sigmoid", 8, 16, 256, True, api_name="/start_round")
    with pytest.raises(Exception, match="target_modules must name at least one linear layer"):
        start_round(client, target_modules=" , ")
    with pytest.raises(Exception, match="processes must be at least 1"):
        start_round(client, processes=0)
    with pytest.raises(Exception, match="No pair on screen"):
        client.predict("tester", api_name="/vote_left")
    added = client.predict("Describe a lighthouse in one sentence.", api_name="/add_prompt")
    assert added[1].startswith("Added prompt #")
    listed = client.predict(api_name="/stored_prompts")  # what opening the Compare tab shows
    choices = [c[0] if isinstance(c, (list, tuple)) else c for c in listed["choices"]]
    assert "Describe a lighthouse in one sentence." in choices


def test_other_sites_and_other_host_names_are_refused_without_logins(app):
    """Cross-site requests with the visitor's browser, and DNS rebinding (a foreign name pointing at loopback)."""
    import httpx

    client, _, _ = app
    url = client.src
    port = url.rstrip("/").rsplit(":", 1)[1]
    text = "A prompt another site slipped in."
    body = {"data": [text]}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Host": f"evil.example:{port}"}):
        refused = httpx.post(f"{url}gradio_api/call/add_prompt", json=body, headers=headers)
        assert refused.status_code == 403, headers
        assert "access-control-allow-origin" not in refused.headers or (
            refused.headers["access-control-allow-origin"] != headers.get("Origin")
            or "access-control-allow-credentials" not in refused.headers
        ), "nothing readable by that site"
    assert httpx.get(f"{url}gradio_api/info", headers={"Host": f"evil.example:{port}"}).status_code == 403
    listed = client.predict(api_name="/stored_prompts")["choices"]
    assert text not in [c[0] if isinstance(c, (list, tuple)) else c for c in listed], "nothing ran"
    own = httpx.post(f"{url}gradio_api/call/queue_status", json={"data": []}, headers={"Origin": url.rstrip("/")})
    assert own.status_code == 200, "the app's own page may"


def test_start_round_takes_every_config_field_by_name(app):
    from ui.train import config_fields

    client, _, _ = app
    api = client.view_api(print_info=False, return_format="dict")
    parameters = api["named_endpoints"]["/start_round"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == [f.name for f in config_fields()] + ["processes"]
    assert all(p["parameter_has_default"] for p in parameters), "every field may be left out"


def test_importing_a_prompt_file_through_the_ui(app, tmp_path):
    """(Before the whole loop, which ends by killing the module's app.)"""
    client, _, _ = app
    good = tmp_path / "more.jsonl"
    good.write_text("".join(json.dumps({"prompt": f"Imported prompt {i}."}) + "\n" for i in range(3)))
    message = client.predict(gradio_client.handle_file(str(good)), api_name="/import_prompts")
    assert message.startswith("Imported 3 new prompts from more.jsonl.")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": \n')
    with pytest.raises(Exception, match=r"bad\.jsonl, line 2: not valid JSON"):
        client.predict(gradio_client.handle_file(str(bad)), api_name="/import_prompts")


def start_round_with_every_field_changed(client) -> None:
    """Ten epochs keep the tiny round busy long enough to see it refuse a second start. Every Train tab field
    is set away from its default, so the round's config.json shows each one arrived."""
    started = client.predict(
        beta=0.2,
        learning_rate=5e-3,
        epochs=10,
        batch_size=4,
        loss_type="sigmoid",
        lora_r=4,
        lora_alpha=8,
        max_length=192,
        continue_from_serving=True,
        reference="previous",
        label_smoothing=0.1,
        target_modules="q_proj, v_proj",
        micro_batch=2,
        seed=5,
        processes=1,
        api_name="/start_round",
    )
    assert started == "Round started."
    with pytest.raises(Exception, match="already running"):
        start_round(client, beta=0.1)


def check_the_round_recorded_every_field(client, work: Path) -> None:
    recorded = json.loads((work / "runs" / "round_001" / "config.json").read_text())["dpo"]
    expected = {"beta": 0.2, "learning_rate": 5e-3, "epochs": 10, "batch_size": 4, "loss_type": "sigmoid"}
    expected |= {"lora_r": 4, "lora_alpha": 8, "max_length": 192, "continue_from_serving": True}
    expected |= {"reference": "previous", "label_smoothing": 0.1, "target_modules": ["q_proj", "v_proj"]}
    expected |= {"micro_batch": 2, "seed": 5, "memory_budget_gib": None}  # advanced fields; unset stays None
    assert {k: recorded[k] for k in expected} == expected
    table = client.predict(api_name="/round_status")[3]
    row = dict(zip(table["headers"], table["data"][0], strict=True))
    # the previous policy as reference: before training the policy is its own reference, so no 'before' score
    assert row["version"] == "round_001" and re.fullmatch(r"– → \d\.\d\d", row["held-out accuracy"]), row
    adapter = json.loads((work / "runs" / "round_001" / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], sorted(adapter["target_modules"])) == (4, 8, ["q_proj", "v_proj"])


def check_the_store_after_a_kill(work: Path) -> None:
    """A vote acknowledged in the UI is on disk even if the app is killed right after."""
    from storage import Store

    with Store(work / "loop.duckdb") as store:
        judgements = store.judgements.list()
        assert len(judgements) == 13 and judgements[-1].labeler == "last-voter"
        assert [j.choice for j in judgements].count("tie") == 1
        (round_,) = store.rounds.list()
        assert round_.status == "done" and round_.n_pairs == 8
        assert sorted(store.rounds.judgement_ids(round_.id)) == sorted(
            json.loads((work / "runs" / "round_001" / "judgements.json").read_text())["train"]
        )
        assert store.rounds.get_serving() == "base"


def test_the_whole_loop_through_the_app(app):
    client, proc, work = app
    client.predict(0.8, 0.95, 16, api_name="/apply_settings")
    statuses = label(client, 10)
    assert all(re.fullmatch(r"Pair from \*\*base\*\* · [0-2] ready in the queue", s) for s in statuses), statuses
    queue = client.predict(api_name="/queue_status")  # what the Label tab's timer shows every 2 s
    assert re.fullmatch(r"Queue: [0-2] of 2 pairs ready · serving \*\*base\*\*", queue), queue
    prompt, *_, status = client.predict(api_name="/next_pair")
    assert prompt.startswith(PROMPT) and status.startswith("Pair from **base**"), (prompt, status)
    tie, next_prompt, *_ = client.predict("tester", api_name="/vote_tie")
    assert next_prompt.startswith(PROMPT), "the vote's answer holds the next pair"
    assert re.fullmatch(r"Saved vote #\d+ \(tie\)\. Total votes: 11\.", tie), tie

    start_round_with_every_field_changed(client)
    client.predict(api_name="/next_pair")  # labeling goes on while the round trains
    assert client.predict("tester", api_name="/vote_skip")[0].startswith("Saved vote #")
    progress, serving, summary = wait_for_round(client)
    assert "**done**" in progress, progress
    assert "10 pairs (every loss)" in summary and "1 ties (not trained)" in summary
    assert "round_001" in serving
    check_the_round_recorded_every_field(client, work)

    *_, status = client.predict(api_name="/next_pair")
    assert "Pair from **round_001**" in status
    assert "serving **round_001**" in client.predict(api_name="/queue_status")
    a, b = client.predict("Tell me a joke.", "base", "round_001", 7, 0.8, 0.95, 16, api_name="/compare")
    again_a, again_b = client.predict("Tell me a joke.", "base", "round_001", 7, 0.8, 0.95, 16, api_name="/compare")
    assert (a, b) == (again_a, again_b), "same versions, settings and seed give the same completions"

    path, message = client.predict("jsonl", api_name="/export")
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert len(rows) == 10 and "Exported 10 pairs (prompt / chosen / rejected" in message
    assert rows[0]["prompt"][0]["role"] == "user" and rows[0]["chosen"][0]["role"] == "assistant"

    assert client.predict("base", api_name="/serve").startswith("Serving **base**")
    *_, status = client.predict(api_name="/next_pair")
    assert "Pair from **base**" in status

    client.predict("last-voter", api_name="/vote_both_bad")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check_the_store_after_a_kill(work)


def test_rate_one_mode_feeds_a_kto_round_from_the_app(tiny_model_dir, tmp_path):
    for client, proc in launch(tiny_model_dir, tmp_path):
        client.predict(0.8, 0.95, 16, api_name="/apply_settings")
        with pytest.raises(Exception, match="No completion on screen: press Skip"):
            client.predict("rater", api_name="/rate_up")
        prompt, text, status, message = client.predict("rater", api_name="/rate_skip")
        assert prompt.startswith(PROMPT) and "Completion 1 of 2 from **base**" in status
        assert message == "Skipped; nothing was stored."
        shown = []
        for i in range(6):  # 👍 on each pair's first completion, 👎 on its second
            rating = "up" if i % 2 == 0 else "down"
            prompt_before, text_before = prompt, text
            prompt, text, status, message = client.predict("rater", api_name=f"/rate_{rating}")
            shown.append((prompt_before, text_before, rating))
            assert message.startswith(f"Saved {'👍' if rating == 'up' else '👎'} #{i + 1} on completion {i % 2 + 1}")
            assert f"Completion {2 if i % 2 == 0 else 1} of 2" in status
            if i % 2 == 0:
                assert prompt == prompt_before, "the second completion of the same pair comes next"
        with pytest.raises(Exception, match="rate completions 👍 / 👎 and pick the kto loss"):
            start_round(client, loss_type="sigmoid")
        # Cancel: a long round stops at its next micro-batch, leaves no round folder, and base keeps serving.
        assert start_round(client, epochs=500, loss_type="kto") == "Round started."
        assert client.predict(api_name="/cancel_round").startswith("Cancelling")
        progress, serving, _ = wait_for_round(client)
        assert "**cancelled**" in progress and "Serving **base**" in serving, progress
        assert not (tmp_path / "runs" / "round_001").exists()  # its number stays taken by the cancelled row
        assert start_round(client, epochs=2, loss_type="kto") == "Round started."
        progress, serving, summary = wait_for_round(client)
        assert "**done**" in progress and "round_002" in serving, progress
        assert "3 👍 / 3 👎 single ratings (kto)" in summary and "0 pairs (every loss)" in summary
        path, message = client.predict("jsonl", "unpaired", api_name="/export")
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        assert "Exported 6 unpaired rows" in message
        got = [(prompt_html(r["prompt"][0]["content"]), r["completion"][0]["content"], r["label"]) for r in rows]
        assert got == [(p, t, r == "up") for p, t, r in shown]
        with pytest.raises(Exception, match="No preference pairs to export yet"):
            client.predict("jsonl", "pairs", api_name="/export")
        proc.kill()
        proc.wait()
        from storage import Store

        with Store(tmp_path / "loop.duckdb") as store:
            cancelled, round_ = store.rounds.list()
            assert cancelled.status == "cancelled"
            assert (round_.n_pairs, round_.n_ratings, round_.config["loss_type"]) == (0, 5, "kto")
            assert [r.labeler for r in store.ratings.list()] == ["rater"] * 6
            recorded = json.loads((tmp_path / "runs" / "round_002" / "judgements.json").read_text())
            assert store.rounds.rating_ids(round_.id) == sorted(recorded["ratings"]["train"])


def test_killing_a_rounds_process_keeps_the_app_serving_and_labelers_labeling(tiny_model_dir, tmp_path):
    """A round's process killed from outside (as the kernel does when a CPU runs out of memory): the Train tab says
    so, base keeps serving, labeling goes on, and the app itself is untouched."""
    import psutil

    for client, proc in launch(tiny_model_dir, tmp_path):
        client.predict(0.8, 0.95, 16, api_name="/apply_settings")
        label(client, 6)
        assert start_round(client, epochs=500, batch_size=1) == "Round started."
        for _ in range(240):  # until it trains
            progress = client.predict(api_name="/round_status")[0]
            if "step " in progress:
                break
            time.sleep(0.5)
        (child,) = [p for p in psutil.Process(proc.pid).children(recursive=True) if "--round-dir" in p.cmdline()]
        child.send_signal(signal.SIGKILL)
        progress, serving, _ = wait_for_round(client)
        assert "**failed**" in progress and "killed by SIGKILL" in progress, progress
        assert "previous policy keeps serving" in progress and "Serving **base**" in serving
        assert proc.poll() is None, "the app is still running"
        *_, status = client.predict(api_name="/next_pair")
        assert "Pair from **base**" in status
        assert client.predict("tester", api_name="/vote_left")[0].startswith("Saved vote #")
        assert not (tmp_path / "runs" / "round_001").exists() and not (tmp_path / "runs" / ".round_001.tmp").exists()


def test_exports_outside_the_working_folder_download_and_ctrl_c_stops_cleanly(tiny_model_dir, tmp_path):
    import shutil
    import uuid

    exports = Path.home() / f".prefloop-test-exports-{uuid.uuid4().hex}"  # neither the app's folder nor /tmp
    try:
        for client, proc in launch(tiny_model_dir, tmp_path, exports=exports):
            client.predict(0.8, 0.95, 16, api_name="/apply_settings")
            label(client, 2)
            path, message = client.predict("jsonl", api_name="/export")
            assert "Exported 2 pairs" in message and str(exports) in message
            assert len(Path(path).read_text().splitlines()) == 2, "the browser got the file"
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            assert proc.wait(timeout=120) == 0
            log = (tmp_path / "app.log").read_text()
            assert "prefloop stopped." in log and "terminate called" not in log, log[-2000:]
    finally:
        shutil.rmtree(exports, ignore_errors=True)


def test_votes_fired_at_once_on_one_pair_store_one_judgement(tiny_model_dir, tmp_path):
    """A double click and a contradictory click, all sent at once by one session, many times over."""
    from storage import Store

    for client, proc in launch(tiny_model_dir, tmp_path):
        client.predict(0.8, 0.95, 8, api_name="/apply_settings")
        for _ in range(8):
            client.predict(api_name="/next_pair")
            jobs = [client.submit("racer", api_name=f"/vote_{c}") for c in ("left", "left", "left", "right")]
            answers = []
            for job in jobs:
                try:
                    answers.append(job.result(timeout=120))
                except Exception as err:  # the refused contradictory vote
                    answers.append(err)
            saved = {a[0] for a in answers if isinstance(a, tuple)}
            assert len({a.split(" ")[2] for a in saved}) == 1, answers  # 'Saved vote #N ...': one id
            shown_next = {(a[1], a[4], a[5]) for a in answers if isinstance(a, tuple)}  # prompt, left, right
            assert len(shown_next) == 1, "a repeated vote gets the same next pair, not one nobody sees again"
        proc.kill()
        proc.wait()
        with Store(tmp_path / "loop.duckdb") as store:
            judged = store.judgements.list()
            assert len(judged) == 8 == store.judgements.count(), judged


def test_sampling_settings_survive_a_restart(tiny_model_dir, tmp_path):
    import httpx

    from storage import Store

    for client, proc in launch(tiny_model_dir, tmp_path):
        assert "applied" in client.predict(0.5, 0.9, 24, api_name="/apply_settings")
        proc.terminate()
        proc.wait(timeout=60)
    with Store(tmp_path / "loop.duckdb") as store:
        before = store.db.value("SELECT max(id) FROM generations") or 0
    for client, proc in launch(tiny_model_dir, tmp_path):
        client.predict(api_name="/next_pair")
        config = httpx.get(f"{client.src}config").json()
        shown = {c["props"].get("label"): c["props"].get("value") for c in config["components"]}
        assert (shown["Temperature"], shown["Top-p"], shown["Max new tokens"]) == (0.5, 0.9, 24)
        proc.terminate()
        proc.wait(timeout=60)
    with Store(tmp_path / "loop.duckdb") as store:
        rows = store.db.read("SELECT settings FROM generations WHERE id > ?", [before])
    assert rows, "the restarted app sampled pairs"
    for (settings,) in rows:
        assert {k: json.loads(settings)[k] for k in ("temperature", "top_p", "max_new_tokens")} == {
            "temperature": 0.5,
            "top_p": 0.9,
            "max_new_tokens": 24,
        }


def test_a_committee_picks_the_pairs_labelers_see_and_the_export_says_so(tiny_model_dir, tmp_path):
    args = ("--candidates", "4", "--selection", "committee", "--control-share", "0.25")
    for client, _ in launch(tiny_model_dir, tmp_path, args=args):
        label(client, 8)
        path, message = client.predict("jsonl", api_name="/export")
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        assert len(rows) == 8 and {r["selection"] for r in rows} <= {"committee", "control"}
        assert "committee" in {r["selection"] for r in rows}, [r["selection"] for r in rows]
