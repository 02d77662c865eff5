"""The benchmarks run end to end on a small CPU setting and end with the JSON line their readers parse.

They check that the figures are there and consistent, never how large they are: speed is for the benchmarks
themselves to report, on a quiet machine.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_bench(module: str, *args: str) -> dict:
    cmd = [sys.executable, "-m", module, *args]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_sampling_bench_reports_each_backend_side_by_side(tokenizer_dir):
    summary = run_bench(
        "bench.sampling",
        *["--model", "tiny", "--tokenizer", str(tokenizer_dir), "--votes", "2", "--max-new-tokens", "8"],
        *["--repeats", "1", "--warmup-s", "0", "--backends", "eager,onnx"],
    )
    assert summary["labelers"] == 1 and set(summary["cpu"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_tile"}
    assert list(summary["backends"]) == ["eager", "onnx"]
    for name, figures in summary["backends"].items():
        assert figures["device"] == "cpu", name
        for key in ("ours_tok_s", "adapter_swap_ms", "pairs_per_min", "sampler_pairs_per_min"):
            assert figures[key] > 0, (name, key)
        assert 0 <= figures["vote_to_pair_p50_ms"] <= figures["vote_to_pair_p95_ms"] <= figures["vote_to_pair_max_ms"]
    eager = summary["backends"]["eager"]
    assert eager["speedup_vs_hf_generate"] == pytest.approx(eager["ours_tok_s"] / eager["hf_generate_tok_s"], rel=0.01)


def test_dpo_bench_reports_ours_against_both_trl_configs(tokenizer_dir):
    summary = run_bench(
        "bench.dpo_vs_trl",
        *["--model", "tiny", "--tokenizer", str(tokenizer_dir), "--pairs", "8", "--batch-size", "4"],
        *["--max-length", "256"],
    )
    for name in ("ours", "trl_default", "trl_best"):
        assert summary[f"{name}_pairs_s"] > 0 and summary[f"{name}_peak_gib"] > 0, name
    assert summary["speedup_vs_trl_best"] == pytest.approx(
        summary["ours_pairs_s"] / summary["trl_best_pairs_s"], rel=0.01
    )


def test_defaults_bench_splits_prompts_as_the_app_meets_them():
    from bench.defaults import split_prompts

    rows = [json.loads(line) for line in (REPO / "labeling" / "starter_prompts.jsonl").read_text().splitlines()]
    prompts, category = [r["prompt"] for r in rows], {r["prompt"]: r["category"] for r in rows}
    train, held = split_prompts(prompts, 40, 24, "random")
    assert len(train) == 40 and len(held) == 24 and not set(train) & set(held)
    # drawn from the whole pool, as the app samples: the held-out prompts share the training prompts' kinds
    assert {category[p] for p in held} & {category[p] for p in train}
    assert split_prompts(prompts, 40, 24, "random") == (train, held), "seeded"
    train, held = split_prompts(prompts, 40, 24, "ordered")  # the old split: other kinds of prompt
    assert not {category[p] for p in held} & {category[p] for p in train}
    with pytest.raises(ValueError, match="at most 133"):
        split_prompts(prompts, 120, 24, "random")
