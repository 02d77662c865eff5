"""The health gate a finished round passes before it serves by itself (training/gate.py), and what the app and
the CLI do with a round that fails it: held back as the candidate, the previous version serving, served only on
an admin's say-so (recorded).

    python -m pytest tests/test_gate.py -q
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import fake_round, taste_pairs, vote_pairs

from services import ServiceConfig, open_services
from serving import SamplingSettings
from storage import Store
from training.config import DPOConfig
from training.gate import base_numbers, failed, gate_record, health_check

REPO = Path(__file__).resolve().parents[1]
BASE = {"nll": 1.25, "foreign_script": 0.001}
HEALTHY = {"nll": 1.4, "foreign_script": 0.002, "kl_per_token": 0.1}
LEARNED = {"accuracy": 0.75, "chosen_reward": 0.2, "rejected_reward": -0.4, "n": 8}


def test_a_healthy_round_passes_and_each_check_fails_with_its_numbers():
    config = DPOConfig()
    assert health_check(HEALTHY, BASE, LEARNED, config) == []
    gibberish = health_check({"nll": 4.16, "foreign_script": 0.3, "kl_per_token": 1.52}, BASE, LEARNED, config)
    assert [r.split(":")[0] for r in gibberish] == ["fluency", "script", "KL"]
    assert "4.16 nats/token under the base model against the base's own 1.25" in gibberish[0]
    assert "30.0% of its letters" in gibberish[1]
    unlearned = health_check(HEALTHY, BASE, LEARNED | {"accuracy": 0.125}, config)
    assert unlearned == [
        "held-out accuracy 12% of 8 pairs is below 50%, more than chance explains: it did not learn the taste of "
        "labels it never saw"
    ]
    assert health_check(HEALTHY, BASE, LEARNED | {"accuracy": 0.4, "n": 5}, config) == [], "2 of 5: a coin does that"
    assert health_check(HEALTHY, BASE, LEARNED | {"accuracy": 0.25, "n": 8}, config) == [], "p = 0.14"
    displaced = LEARNED | {"chosen_reward": -9.2, "rejected_reward": -6.3}  # beta 0.1: -92 and -63 nats
    (falling,) = health_check(HEALTHY, BASE, displaced, DPOConfig(beta=0.1))
    assert falling.startswith("both held-out answers became less likely: log π/π_ref -92 nats for the chosen")
    mild = LEARNED | {"chosen_reward": -0.88, "rejected_reward": -0.84}  # -8.8 and -8.4 nats: common in DPO
    assert health_check(HEALTHY, BASE, mild, DPOConfig(beta=0.1)) == []


def test_a_round_writing_words_the_base_would_not_is_held_back_though_its_nll_looks_fluent():
    # Measured on a degraded round (bench.tastes, docs/benchmarks.md): NLL under the base at the base's own level,
    # yet 17 % of its answers had such tokens, against 1.6 % for the healthy rounds of the defaults.
    words = {"lifted_share": 0.17, "lifted": ["Dear[Rate], I", "a sw[anson] of the", "file[omegran]ate."]}
    (reason,) = health_check(HEALTHY | words, BASE, LEARNED, DPOConfig())
    assert reason.startswith("new words: 17% of its answers have a token it made ≥ 4 nats likelier"), reason
    assert "(allowed 10%)" in reason and "“Dear[Rate], I”; “a sw[anson] of the”" in reason
    assert health_check(HEALTHY | words | {"lifted_share": 1 / 16}, BASE, LEARNED, DPOConfig()) == [], "1 of 16"
    assert health_check(HEALTHY | words, BASE, LEARNED, DPOConfig(gate_invented=None)) == [], "check off"
    assert health_check(HEALTHY | {"lifted_share": None}, BASE, LEARNED, DPOConfig()) == [], "unknown: skipped"


def test_checks_are_skipped_when_unknown_turned_off_or_on_too_few_held_out_pairs():
    config = DPOConfig(gate_nll_increase=None, gate_kl=None)
    assert health_check({"nll": 9.0, "kl_per_token": 3.0}, BASE, {}, config) == [], "both checks off"
    assert health_check({"nll": 9.0}, None, None, DPOConfig()) == [], "no base measured: fluency unknown"
    assert health_check(HEALTHY, BASE, LEARNED | {"accuracy": 0.0, "n": 2}, DPOConfig()) == [], "2 pairs: too few"
    assert health_check(HEALTHY, BASE, {"accuracy": 0.0}, DPOConfig()) == [], "how many pairs: unknown"
    with pytest.raises(ValueError, match="gate_kl must be a number >= 0"):
        DPOConfig(gate_kl=-1)


def test_the_base_comes_from_the_round_or_an_earlier_round_on_the_same_prompts():
    earlier = [
        {"diagnostics": {"prompts_key": "other", "base": {"nll": 9.0}}},
        {"diagnostics": {"prompts_key": "k", "base": {"nll": 1.25, "foreign_script": 0.0}}},
    ]
    assert base_numbers({"prompts_key": "k"}, earlier) == {"nll": 1.25, "foreign_script": 0.0}
    assert base_numbers({"prompts_key": "new"}, earlier) is None
    assert base_numbers({"prompts_key": "k", "base": {"nll": 2.0}}, earlier) == {"nll": 2.0}
    metrics = {"diagnostics": {"prompts_key": "k", "policy": {"nll": 4.0}}, "heldout_after": LEARNED, "n_heldout": 8}
    record = gate_record(metrics, DPOConfig(), earlier)
    assert record["passed"] is False and record["reasons"][0].startswith("fluency: its answers score 4.00")
    assert failed(metrics | {"gate": record}) == record["reasons"]
    assert failed({}) == [], "rounds from before the gate count as passed"


@pytest.fixture
def services(default_model_dir, tmp_path):
    config = ServiceConfig(
        db=str(tmp_path / "s.duckdb"), model=str(default_model_dir), runs=str(tmp_path / "runs"), device="cpu",
        backend="eager", queue_depth=1, sample_batch=1,
    )  # fmt: skip
    services = open_services(config)
    services.labeling.set_sampling(SamplingSettings(max_new_tokens=8))
    yield services
    services.close()


# A learning rate 50x the default on the default model: two steps and its answers loop on one word ("note note
# note…"), far less likely under the base than the base's own answers, and far from it in KL.
HARMFUL = dict(learning_rate=0.05, epochs=1, batch_size=3, heldout_fraction=0.25, max_length=64, diagnostic_prompts=4,
               diagnostic_tokens=16)  # fmt: skip


@pytest.mark.slow
def test_a_harmful_round_is_held_back_with_its_reasons_until_an_admin_serves_it(services, tmp_path):
    vote_pairs(services.store, taste_pairs(8))
    services.rounds.start(DPOConfig(**HARMFUL))
    services.rounds.wait(900)
    status = services.rounds.status()
    assert status.state == "done", status
    assert status.message.startswith("round_001 failed the health check and was not served"), status.message
    reasons = failed(services.store.rounds.get(1).metrics)
    assert reasons[0].startswith("fluency: its answers score"), reasons
    assert any(r.startswith("KL") for r in reasons) and "; ".join(reasons) in status.message
    assert services.status().serving == "base" and services.store.rounds.get_serving() == "base"
    assert services.versions.candidate() == "round_001", "it waits as the candidate, review off"
    assert set(status.phases) == {"load", "reference", "heldout_before", "steps", "heldout_after", "diagnostics"}
    assert all(p["done"] == p["total"] for p in status.phases.values()), status.phases

    assert services.versions.serve("round_001", "ada") == reasons
    assert services.status().serving == "round_001" and services.versions.candidate() is None
    (override,) = services.store.rounds.get(1).metrics["gate"]["served_anyway"]
    assert override["by"] == "ada"


def test_serving_a_round_that_passed_records_nothing(tiny_model_dir, tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        version = fake_round(store, tiny_model_dir, tmp_path / "round_001")
        store.rounds.set_serving(version)
        assert "gate" not in store.rounds.get(1).metrics and failed(store.rounds.get(1).metrics) == []


@pytest.mark.slow
def test_the_cli_exits_3_and_does_not_serve_a_round_that_fails_unless_told_to(default_model_dir, tmp_path):
    db = tmp_path / "loop.duckdb"
    with Store(db) as store:
        vote_pairs(store, taste_pairs(8))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in HARMFUL.items()]
    cmd = [sys.executable, "-m", "training", "--db", str(db), "--model", str(default_model_dir)]
    cmd += ["--runs", str(tmp_path / "runs"), "--device", "cpu", *flags]
    held = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert held.returncode == 3, held.stderr[-2000:]
    assert "round_001 failed the health check and was not served" in held.stderr
    with Store(db) as store:
        assert store.rounds.get_serving() == "base" and store.rounds.get_candidate() == "round_001"
    served = subprocess.run([*cmd, "--serve-anyway"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert served.returncode == 0, served.stderr[-2000:]
    assert json.loads(served.stdout.strip().splitlines()[-1])["gate"]["passed"] is False
    with Store(db) as store:
        assert store.rounds.get_serving() == "round_002", "its labels were unused: round_001 never served"
        assert store.rounds.get(2).metrics["gate"]["served_anyway"][0]["by"] == "python -m training --serve-anyway"
