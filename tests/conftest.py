"""Shared fixtures: a tiny llama with the default model's tokenizer, and the real default model folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MODEL_CACHE = Path(os.environ.get("PREFLOOP_MODEL_CACHE", REPO / "data" / "models"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The bundled SmolLM2-135M-Instruct, converted once to safetensors (shared with the app's cache)."""
    from models import prepare_default_model

    return prepare_default_model(MODEL_CACHE)


def build_tiny_llama(path: Path, tokenizer_dir: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A small random llama (2 layers unless asked) with the default model's tokenizer and chat template."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


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
    from serving import PolicyServer, SamplingSettings
    from storage import Store

    store = Store(":memory:")
    store.add_prompts([f"Tell me about topic {i}." for i in range(12)], source="test")
    server = PolicyServer(str(tiny_model_dir), device="cpu")
    sampler = PairSampler(store, server, depth=3, seed=0)
    sampler.set_settings(SamplingSettings(max_new_tokens=8))
    yield Loop(store, server, sampler)
    sampler.stop()
    store.close()


def label(loop, n: int) -> None:
    """`n` votes through the loop, alternating right and left."""
    for i in range(n):
        loop.vote(loop.next_pair(), "left" if i % 2 else "right", labeler="t")


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
        if status["state"] != "done":
            raise TrainingError(status["message"])
        return store.rounds.get(round_id)

    return run
