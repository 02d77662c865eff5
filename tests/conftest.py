"""Shared fixtures and test data: a tiny llama with the default model's tokenizer, the real default model folder,
stores with votes, the pairs rounds train on; CUDA tests skipped without a GPU. A slow test carries the `slow`
mark (a module whose every test is slow says so once, as `pytestmark`).

    python -m pytest -m "not slow" -q    # the fast subset
    python -m pytest -q                  # everything (GPU tests skip without CUDA)

Helpers that test files import by name live in helpers.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import MODEL_CACHE, VOTES, build_tiny_llama, vote


def pytest_collection_modifyitems(config, items):
    skip_gpu = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if skip_gpu is not None and "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The bundled SmolLM2-135M-Instruct, converted once to safetensors (shared with the app's cache)."""
    from models import prepare_default_model

    return prepare_default_model(MODEL_CACHE)


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The default model's tokenizer: PREFLOOP_TOKENIZER_DIR (a folder of just its tokenizer files, for
    machines without the model), else the default model folder."""
    if "PREFLOOP_TOKENIZER_DIR" in os.environ:
        return Path(os.environ["PREFLOOP_TOKENIZER_DIR"])
    from models import prepare_default_model

    return prepare_default_model(MODEL_CACHE)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_qlora_model_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """Like tiny_model_dir, with layers wide enough for bitsandbytes' 64-value NF4 blocks."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-64"), tokenizer_dir, hidden=64)


@pytest.fixture
def loop(tiny_model_dir):
    """A labeling loop on a real in-memory store and the tiny model: 12 prompts, 8 new tokens, queue of 3."""
    from labeling.loop import Loop
    from labeling.sampler import PairSampler
    from serving import SamplingSettings, TorchPolicyServer
    from storage import Store

    store = Store(":memory:")
    store.prompts.add_many([f"Tell me about topic {i}." for i in range(12)], source="test")
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu")
    sampler = PairSampler(store, server, depth=3, seed=0)
    sampler.set_settings(SamplingSettings(max_new_tokens=8))
    yield Loop(store, server, sampler)
    sampler.stop()
    store.close()


@pytest.fixture
def versions(loop):
    """The versions beside `loop` (services/versions.py): list, load, serve or hand over, compare."""
    from services.versions import Versions

    return Versions(loop.store, loop.server, loop.sampler)


@pytest.fixture
def train_round():
    """Run one round as the app does (planned from the store, trained in a child process, recorded) and return
    the store's Round; raises TrainingError with the Train tab's message if it does not finish."""
    from training.runner import RoundRunner
    from training.trainer import TrainingError

    def run(store, config, *, model, runs_dir, device="cpu", on_done=None):
        runner = RoundRunner(store, str(model), Path(runs_dir), on_done=on_done, device=device)
        round_id = runner.start(config)
        runner.wait(600)
        status = runner.status()
        if status.state != "done":
            raise TrainingError(status.message)
        return store.rounds.get(round_id)

    return run


@pytest.fixture
def store():
    """An empty in-memory store, closed after the test."""
    from storage import Store

    store = Store(":memory:")
    yield store
    store.close()


@pytest.fixture
def store_with_votes(store):
    """The `store` with VOTES: left, tie, right, both_bad, skip (judgements 1 to 5; only 1 and 3 are pairs)."""
    for choice, prompt, left, right in VOTES:
        vote(store, choice, prompt, left, right)
    return store
