"""Review before serving: with it on, a finished round waits as the candidate and the previous version keeps
serving until someone serves it; the setting and the candidate are kept in the store.

    python -m pytest tests/test_review.py -q
"""

import pytest
from helpers import fake_round, taste_pairs, vote_pairs

from services import ServiceConfig, open_services
from serving import SamplingSettings
from storage import Store, StoreError
from training.config import DPOConfig

ROUND = DPOConfig(
    learning_rate=5e-3,
    epochs=1,
    batch_size=4,
    lora_r=8,
    lora_alpha=16,
    max_length=128,
    diagnostic_prompts=2,
    diagnostic_tokens=8,
)


def test_review_and_the_candidate_persist_and_serving_the_candidate_ends_its_review(tiny_model_dir, tmp_path):
    with Store(tmp_path / "loop.duckdb") as store:
        assert store.settings.review() is False, "off by default: rounds serve as they finish"
        version = fake_round(store, tiny_model_dir, tmp_path / "round_001")
        store.settings.set_review(True)
        store.rounds.set_candidate(version)
        with pytest.raises(StoreError, match="not a round to review"):
            store.rounds.set_candidate("base")
        with pytest.raises(StoreError, match="No round 9; pick one from the round history"):
            store.rounds.set_candidate("round_009")
    with Store(tmp_path / "loop.duckdb") as store:  # after a restart
        assert store.settings.review() is True and store.rounds.get_candidate() == version
        store.rounds.set_serving("base")
        assert store.rounds.get_candidate() == version, "serving another version leaves the review pending"
        store.rounds.set_serving(version)
        assert store.rounds.get_candidate() is None
        store.settings.set_review(False)
        assert store.settings.review() is False


@pytest.fixture
def services(tiny_model_dir, tmp_path):
    config = ServiceConfig(
        db=str(tmp_path / "s.duckdb"),
        model=str(tiny_model_dir),
        runs=str(tmp_path / "runs"),
        device="cpu",
        queue_depth=1,
        sample_batch=1,
    )
    services = open_services(config)
    services.labeling.set_sampling(SamplingSettings(max_new_tokens=8))
    yield services
    services.close()


def test_with_review_on_a_finished_round_waits_until_it_is_served(services):
    vote_pairs(services.store, taste_pairs(8))
    services.rounds.set_review(True)
    services.rounds.start(ROUND)
    services.rounds.wait(600)
    status = services.rounds.status()
    assert status.state == "done", status
    assert status.message.startswith("round_001 is ready for review; the previous version keeps serving.")
    assert services.status().serving == "base" and services.store.rounds.get_serving() == "base"
    assert services.versions.candidate() == "round_001"
    assert services.store.rounds.get(1).metrics["diagnostics"]["policy"]["mean_length"] <= 8

    services.versions.hand_over("round_001")
    assert services.status().serving == "round_001" and services.versions.candidate() is None
    assert services.store.rounds.get_candidate() is None


def test_with_review_off_a_finished_round_serves_at_once(services, tiny_model_dir, tmp_path):
    version = fake_round(services.store, tiny_model_dir, tmp_path / "round_001")
    said = services.rounds.round_finished(services.store.rounds.get(1))
    assert said == f"{version} is now serving." and services.status().serving == version
    assert services.versions.candidate() is None
    services.rounds.set_review(True)
    fake_round(services.store, tiny_model_dir, tmp_path / "round_002")
    assert services.rounds.round_finished(services.store.rounds.get(2)).startswith("round_002 is ready for review")
    assert services.status().serving == version and services.versions.candidate() == "round_002"
