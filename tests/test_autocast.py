"""bf16 autocast: on CUDA, and on CPUs that multiply bf16 natively, unless a round asks for fp32."""

import contextlib
import math

import pytest
import torch
from helpers import taste_pairs

from models import load_model, load_tokenizer
from training.config import DPOConfig
from training.data import collate, tokenize_pair
from training.logps import completion_logps
from training.trainer import compute_autocast, run_round

PAIRS = taste_pairs(8)


def test_what_each_compute_dtype_means_on_a_cpu():
    assert isinstance(compute_autocast("cpu", "float32"), contextlib.nullcontext)
    bf16 = compute_autocast("cpu", "bfloat16")
    assert isinstance(bf16, torch.autocast) and bf16.fast_dtype == torch.bfloat16
    assert isinstance(compute_autocast("cpu", "auto", quantization="nf4"), contextlib.nullcontext)
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        DPOConfig(compute_dtype="float16")


def test_cpu_bf16_log_probs_stay_close_to_fp32(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), "none", "cpu", dtype=torch.float32).eval()
    batch = collate([tokenize_pair(tokenizer, p, 256, 128) for p in PAIRS[:4]], tokenizer.pad_token_id)
    with torch.no_grad():
        exact = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        with compute_autocast("cpu", "bfloat16"):
            fast = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, exact, rtol=2e-2, atol=0.5)


@pytest.mark.parametrize("compute_dtype", ["bfloat16", pytest.param("float32", marks=pytest.mark.slow)])
def test_a_cpu_round_in_either_dtype_starts_at_ln2_and_records_it(tiny_model_dir, tmp_path, compute_dtype):
    config = DPOConfig(learning_rate=5e-3, epochs=1, batch_size=4, heldout_fraction=0.25, min_pairs=4, rpo_alpha=0.0)
    config = DPOConfig(**(config.to_dict() | {"compute_dtype": compute_dtype}))
    history = []
    result = run_round(
        config, PAIRS, tmp_path / "r", model=str(tiny_model_dir), device="cpu", on_progress=history.append
    )
    assert result.metrics["bf16_autocast"] is (compute_dtype == "bfloat16")
    # One pair per pass: the policy's first pass repeats the reference pass exactly, in either dtype.
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
