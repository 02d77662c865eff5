"""Shared fixtures and test data: a tiny llama with the default model's tokenizer, the real default model folder,
stores with votes, the pairs rounds train on, and which tests are slow.

    python -m pytest -m "not slow" -q    # the fast subset
    python -m pytest -q                  # everything (GPU tests skip without CUDA)

Test files import the helpers with `from conftest import taste_pairs, vote, votes`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MODEL_CACHE = Path(os.environ.get("PREFLOOP_MODEL_CACHE", REPO / "data" / "models"))


# Modules whose every test launches the app, runs a round in a child process or torchrun, or benchmarks: slow
# as a whole, so `-m "not slow"` leaves them out without a marker on each test.
SLOW_MODULES = {
    "test_app",
    "test_arena_app",
    "test_audit_app",
    "test_bench",
    "test_qlora_cli",
    "test_review_app",
    "test_runner",
    "test_team",
}


def pytest_collection_modifyitems(config, items):
    skip_gpu = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if skip_gpu is not None and "gpu" in item.keywords:
            item.add_marker(skip_gpu)


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
    store.prompts.add_many([f"Tell me about topic {i}." for i in range(12)], source="test")
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


def fake_round(store, model_dir, folder: Path, init_lora_weights=True) -> str:
    """A finished round whose adapter is a fresh LoRA on the tiny model (random, so it samples unlike the base,
    with init_lora_weights=False); returns its version."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=init_lora_weights)
    get_peft_model(base, config).save_pretrained(folder)
    round_id = store.rounds.start({}, None, str(model_dir))
    store.rounds.finish(round_id, str(folder), {}, [])
    return store.rounds.get(round_id).version


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


TOPICS = ["rain", "tea", "maps", "bees", "clocks", "rivers", "bread", "kites", "salt", "owls", "snow", "glass"]


def taste_pairs(n: int = 12) -> list:
    """`n` (at most 12) pairs of one consistent taste, polite complete answers over curt refusals; judgement ids
    0..n-1."""
    from storage.labels import PreferencePair

    return [
        PreferencePair(f"Tell me about {t}.", f"Happy to help! Here is a short note about {t}.", "No.", judgement_id=i)
        for i, t in enumerate(TOPICS[:n])
    ]


def varied_pairs() -> list:
    """Four pairs of unlike lengths, so a batch of them pads, with judgement ids 1 to 4: what the comparisons
    with TRL feed both trainers."""
    from storage.labels import PreferencePair

    return [
        PreferencePair("Name a colour.", "Blue, like a clear sky.", "No.", 1),
        PreferencePair(
            "Give me a short tip for sleeping better.", "Keep a regular bedtime.", "Sleep is for the weak, honestly.", 2
        ),
        PreferencePair("What is 2 + 2?", "4", "It is 5, obviously, as everyone knows.", 3),
        PreferencePair("Say hi in French.", "Bonjour !", "hello", 4),
    ]


SETTINGS = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 64, "seed": 7}


def vote(store, choice: str, prompt: str = "prompt 0", left: str = "left 0", right: str = "right 0") -> int:
    """A new prompt with completions `left` / `right` shown in that order, and ana's `choice` on them; returns
    the judgement id."""
    prompt_id = store.prompts.add(prompt)
    left_id = store.generations.add(prompt_id, "base", left, SETTINGS)
    right_id = store.generations.add(prompt_id, "base", right, SETTINGS)
    return store.judgements.add(prompt_id, left_id, right_id, choice, "ana", "base")


def votes(store, *choices: str) -> list[int]:
    """One vote per choice, the i-th on 'prompt <i>' with completions 'left <i>' / 'right <i>'."""
    return [vote(store, choice, f"prompt {i}", f"left {i}", f"right {i}") for i, choice in enumerate(choices)]


def vote_pairs(store, pairs) -> list[int]:
    """Each preference pair as a vote for its chosen completion shown on the left (e.g. `taste_pairs(10)`)."""
    return [vote(store, "left", p.prompt, p.chosen, p.rejected) for p in pairs]


# One vote of each kind, the first with text that is not ASCII: (choice, prompt, left, right).
VOTES = [
    ("left", "Name a fruit.", "Mango 🥭", "Carrot"),
    ("tie", "Say hi.", "hi", "hello"),
    ("right", "2+2?", "5", "4"),
    ("both_bad", "Capital of France?", "Rome", "Berlin"),
    ("skip", "???", "x", "y"),
]


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


# -- the launched app -----------------------------------------------------------------------------------
PROMPT = '<div class="prompt"><strong>Prompt:</strong>'  # how the Label tab starts showing a prompt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(model_dir, work: Path, exports: Path | None = None, args: tuple[str, ...] = (), auth=None):
    """Start app.py as a user would, on `model_dir` with its files under `work` (more flags in `args`);
    yields (client, process), the client logged in with `auth` = (name, password) when given."""
    import gradio_client

    port = free_port()
    cmd = [
        sys.executable,
        str(REPO / "app.py"),
        "--model",
        str(model_dir),
        "--db",
        str(work / "loop.duckdb"),
        "--runs",
        str(work / "runs"),
        "--exports",
        str(exports or work / "exports"),
        "--port",
        str(port),
        "--no-browser",
        "--queue-depth",
        "2",
        *args,
    ]
    log = open(work / "app.log", "w")
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"}
    )
    url = f"http://127.0.0.1:{port}/"
    client = None
    for _ in range(240):
        if proc.poll() is not None:
            pytest.fail(f"app exited early:\n{(work / 'app.log').read_text()[-3000:]}")
        try:
            client = gradio_client.Client(url, verbose=False, auth=auth)
            break
        except Exception:
            time.sleep(0.5)
    try:
        assert client is not None, (work / "app.log").read_text()[-3000:]
        yield client, proc
    finally:  # also when a test fails inside `for client, proc in launch(...)`: no app is left running
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
