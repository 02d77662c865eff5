"""Helpers the test files share: test data (pairs of one taste, votes), a tiny llama builder, a finished fake
round, and the launched app. Fixtures live in conftest.py; test files import these by name:

    from helpers import taste_pairs, vote, votes
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


def old_vote(store, prompt: str, left: str, right: str, author: str = "model") -> int:
    """A new prompt and ana's left vote on `left` / `right`, inserted as prefloop wrote votes before judgements
    recorded how their pair was chosen (for a file migrated from before 008_pair_selection); `author` "human": the
    left side is an edit to chosen. Returns the judgement id."""
    from datetime import datetime

    from storage.generations import insert_generation

    prompt_id = store.prompts.add(prompt)

    def insert(cur) -> int:
        left_id = insert_generation(cur, prompt_id, "base", left, {} if author == "human" else SETTINGS, author, None)
        right_id = insert_generation(cur, prompt_id, "base", right, SETTINGS, "model", None)
        judgement_id = cur.execute(
            "INSERT INTO judgements (prompt_id, left_generation_id, right_generation_id, choice, labeler, "
            "policy_version, created_at) VALUES (?, ?, ?, 'left', 'ana', 'base', ?) RETURNING id",
            [prompt_id, left_id, right_id, datetime.now()],
        ).fetchone()[0]
        cur.execute("INSERT INTO judged_pairs VALUES (?, ?, ?)", [*sorted([left_id, right_id]), judgement_id])
        return judgement_id

    return store.db.write(insert)


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


# -- the launched app -----------------------------------------------------------------------------------
PROMPT = '<div class="prompt"><strong>Prompt:</strong>'  # how the Label tab starts showing a prompt


def wait_until(check, timeout: float = 120.0) -> bool:
    """Whether `check()` came true within `timeout` seconds (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


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
