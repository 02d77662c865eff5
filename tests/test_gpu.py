"""CUDA paths: QLoRA rounds in bf16 autocast. Skipped without a GPU (CI has none)."""

import contextlib
import math

import pytest
import torch

from models import load_model, load_tokenizer
from storage.labels import PreferencePair
from training.config import DPOConfig
from training.data import collate, tokenize_pair
from training.logps import completion_logps
from training.trainer import compute_autocast, run_round

pytestmark = pytest.mark.gpu
TOPICS = ["rain", "tea", "maps", "bees", "clocks", "rivers", "bread", "kites", "salt", "owls", "snow", "glass"]
PAIRS = [
    PreferencePair(f"Tell me about {t}.", f"Happy to help! Here is a short note about {t}.", "No.", judgement_id=i)
    for i, t in enumerate(TOPICS)
]


def test_autocast_is_bf16_on_cuda_and_off_elsewhere():
    assert isinstance(compute_autocast("cpu", "float32"), contextlib.nullcontext)
    with compute_autocast("cuda"):
        assert torch.get_autocast_dtype("cuda") == torch.bfloat16 and torch.is_autocast_enabled("cuda")


def test_autocast_log_probs_match_fp32(tiny_qlora_model_dir):
    tokenizer = load_tokenizer(str(tiny_qlora_model_dir))
    model = load_model(str(tiny_qlora_model_dir), "none", "cuda", dtype=torch.float32).eval()
    batch = collate([tokenize_pair(tokenizer, p, 256, 128) for p in PAIRS[:4]], tokenizer.pad_token_id)
    batch = {k: v.cuda() for k, v in batch.items()}
    with torch.no_grad():
        exact = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        with compute_autocast("cuda"):
            fast = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, exact, rtol=2e-2, atol=0.5)


def test_qlora_round_on_cuda_starts_at_ln2_and_learns(tiny_qlora_model_dir, tmp_path):
    config = DPOConfig(learning_rate=5e-3, epochs=3, batch_size=4, heldout_fraction=0.25, min_pairs=4, rpo_alpha=0.0)
    history = []
    model = str(tiny_qlora_model_dir)
    result = run_round(config, PAIRS, tmp_path / "round_001", model=model, device="cuda", on_progress=history.append)
    assert result.metrics["quantization"] == "nf4" and result.metrics["device"] == "cuda"
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert result.metrics["heldout_after"]["margin"] > result.metrics["heldout_before"]["margin"] + 0.01
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_the_app_runner_trains_a_qlora_round_on_cuda_in_its_own_process(tiny_qlora_model_dir, tmp_path):
    """What the Train tab does on a GPU machine: plan from the store, one process per GPU, NF4 base, recorded."""
    from storage import Store
    from training.runner import RoundRunner, default_processes

    store = Store(":memory:")
    for pair in PAIRS:
        prompt = store.prompts.add(pair.prompt)
        chosen, rejected = (store.generations.add(prompt, "base", text, {}) for text in (pair.chosen, pair.rejected))
        store.judgements.add(prompt, chosen, rejected, "left", "ana", "base")
    served = []
    runner = RoundRunner(store, str(tiny_qlora_model_dir), tmp_path, on_done=served.append, device="cuda")
    runner.start(DPOConfig(learning_rate=5e-3, epochs=2, batch_size=4, min_pairs=4))
    runner.wait(600)
    status = runner.status()
    assert status.state == "done", status
    assert default_processes("cuda") == torch.cuda.device_count()
    (round_,) = store.rounds.list()
    assert round_.metrics["quantization"] == "nf4" and round_.metrics["device"].startswith("cuda")
    assert served[0].version == "round_001" and round_.n_pairs == len(PAIRS) - 2
