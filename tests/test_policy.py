"""The serving policy swaps adapters without reloading the base, and serves exactly the trained adapter."""

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from labeling.policy import BASE_VERSION, PolicyServer, SamplingSettings
from training.config import DPOConfig
from training.data import TrainingPair
from training.round import run_round

PAIRS = [TrainingPair(f"Tell me about {t}.", f"Gladly! A note on {t}.", "No.", i) for i, t in enumerate("abcdefgh")]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    out = {}
    for n, lr in ((1, 5e-3), (2, 2e-2)):
        config = DPOConfig(learning_rate=lr, epochs=1, batch_size=4, heldout_fraction=0.0, min_pairs=4, seed=n)
        out[f"round_00{n}"] = run_round(
            config, PAIRS, runs / f"round_00{n}", model=str(tiny_model_dir), device="cpu"
        ).adapter_dir
    return out


def logits(model, tokenizer, text="Tell me about owls."):
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_swapped_adapter_equals_a_fresh_peft_load(tiny_model_dir, adapters):
    server = PolicyServer(str(tiny_model_dir), device="cpu")
    base_weights = server.model.model.embed_tokens.weight.data_ptr()
    for version, path in adapters.items():
        server.serve(version, str(path))
        fresh = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(path)).eval()
        torch.testing.assert_close(logits(server.model, server.tokenizer), logits(fresh, server.tokenizer))
    assert server.model.model.embed_tokens.weight.data_ptr() == base_weights, "the base was not reloaded"
    server.serve(BASE_VERSION)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    torch.testing.assert_close(logits(server.model, server.tokenizer), logits(plain, server.tokenizer))


def test_generation_from_another_version_leaves_the_serving_one_active(tiny_model_dir, adapters):
    server = PolicyServer(str(tiny_model_dir), device="cpu")
    server.serve("round_001", str(adapters["round_001"]))
    server.load("round_002", str(adapters["round_002"]))
    settings = SamplingSettings(max_new_tokens=5, seed=3)
    first = server.generate(["Hi"], n=2, settings=settings)
    server.generate(["Hi"], n=2, settings=settings, version="round_002")
    assert server.version == "round_001"
    assert server.generate(["Hi"], n=2, settings=settings) == first, "same version, settings and seed repeat"


def test_unknown_version_is_refused(tiny_model_dir):
    server = PolicyServer(str(tiny_model_dir), device="cpu")
    with pytest.raises(ValueError, match="not loaded"):
        server.generate(["Hi"], n=1, settings=SamplingSettings(max_new_tokens=2), version="round_009")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"temperature": 0}, "temperature"), ({"top_p": 1.5}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens")],
)
def test_bad_sampling_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**kwargs)
