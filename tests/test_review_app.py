"""Review before serving through the launched app and gradio_client: with it on, a finished round waits as the
candidate (the base keeps serving), the Train tab shows it with its diagnostics and picks it to serve, the
Arena's pickers can be set to candidate vs serving, and serving it works.

    python -m pytest tests/test_review_app.py -q
"""

import time

import pytest

gradio_client = pytest.importorskip("gradio_client")

from helpers import launch, taste_pairs, vote_pairs  # noqa: E402 (after the skip)

from storage import Store  # noqa: E402

pytestmark = pytest.mark.slow  # launches the app, a round's process or a benchmark

SMALL = {"learning_rate": 5e-3, "epochs": 1, "lora_r": 8, "lora_alpha": 16, "max_length": 128}
DIAGNOSTICS = {"diagnostic_prompts": 2, "diagnostic_tokens": 8}


def value(shown):
    """What a widget holds, whether the handler returned the value or an update of it."""
    return shown.get("value") if isinstance(shown, dict) and shown.get("__type__") == "update" else shown


def wait_for_round(client) -> tuple[str, str]:
    """Poll /round_status until the round ends; returns (progress, serving line)."""
    for _ in range(600):
        progress, _, _, _, serving, _ = client.predict(api_name="/round_status")
        if any(f"**{state}**" in progress for state in ("done", "failed", "cancelled")):
            return progress, serving
        time.sleep(0.5)
    pytest.fail(f"the round did not end: {progress}")


def test_a_reviewed_round_waits_for_its_serve(tiny_model_dir, tmp_path):
    with Store(tmp_path / "loop.duckdb") as store:  # labels to train on, before the app starts
        store.prompts.add_many(["Name a river.", "Name a hill."], source="test")
        vote_pairs(store, taste_pairs(8))
    for client, proc in launch(tiny_model_dir, tmp_path, args=("--backend", "eager")):
        client.predict(0.8, 0.95, 8, api_name="/apply_settings")
        assert client.predict(api_name="/round_review")[0] is False, "off by default"
        assert client.predict(True, api_name="/set_review").startswith("Each new round now waits for review")
        with pytest.raises(Exception, match="No round is awaiting review"):
            client.predict(api_name="/arena_candidate")

        assert client.predict(**SMALL, **DIAGNOSTICS, api_name="/start_round") == "Round started."
        progress, serving = wait_for_round(client)
        assert "**done** · round_001 is ready for review; the previous version keeps serving." in progress
        assert serving == "Serving **base**"
        review, shares, lengths, _, warnings, panel, serve_choice = map(value, client.predict(api_name="/round_review"))
        assert review is True and serve_choice == "round_001", "the candidate is the serve picker's choice"
        assert panel.startswith("### round_001 is ready for review") and "**base** keeps serving" in panel
        assert "| mean length (tokens) |" in panel
        assert {row[0] for row in lengths["data"]} == {"base", "round_001"}
        assert {row[2] for row in shares["data"]} >= {"KL per token (nats)", "distinct-2", "held-out accuracy"}
        assert client.predict(api_name="/arena_candidate") == ("round_001", "base")

        assert client.predict("round_001", api_name="/serve") == "Serving **round_001**; new pairs come from it."
        assert client.predict(api_name="/round_status")[4] == "Serving **round_001**"
        assert value(client.predict(api_name="/round_review")[5]) == "", "nothing awaits review once it serves"
        proc.kill()
        proc.wait()
    with Store(tmp_path / "loop.duckdb") as store:
        assert store.rounds.get_serving() == "round_001" and store.rounds.get_candidate() is None
        assert store.settings.review() is True, "the setting is kept"
