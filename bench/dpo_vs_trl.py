"""Benchmark: prefloop's DPO round against TRL's DPOTrainer, same model, pairs, LoRA, batch and max length.

    python -m bench.dpo_vs_trl --model tiny --pairs 32          # CPU
    python -m bench.dpo_vs_trl --model default --pairs 40       # CPU, the bundled SmolLM2-135M-Instruct itself
    python -m bench.dpo_vs_trl --model 1.7b --pairs 256         # CUDA: random-init llama of that shape, NF4 base
    python -m bench.dpo_vs_trl --model 8b --pairs 128 --memory-limit-gib 24   # does an 8B round fit a 24 GB card?

Prints a table and our speed relative to TRL's, then, last, one JSON line; a variant that runs out of memory
is printed as such and its figures are null; `ours_retried` says our round ran out of memory once and finished
with half the micro-batch. `ours_ungrouped` is our round without length grouping (steps of randomly mixed
lengths, as TRL batches them), to show what grouping buys. pairs/s counts pairs trained per second of the whole round:
reference log-probs, every step, and (for ours) writing the adapter. Peak memory is CUDA's max allocated, or
on CPU the peak resident-set growth sampled every 5 ms. The tokenizer is the default model's (49,152 tokens).
Both compute in the same dtype: bf16 (autocast) on CUDA and on CPUs that multiply bf16 natively, else fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.startup import cpu_flags
from models import DEFAULT_MODEL_CACHE, prepare_default_model, resolve_quantization
from storage.labels import PreferencePair, trl_rows
from training.config import DPOConfig
from training.trainer import TrainingError, run_round, uses_bf16

SHAPES = {  # hidden, layers, heads, kv heads, intermediate
    "tiny": (256, 4, 4, 2, 768),
    "1.7b": (2048, 24, 32, 32, 8192),
    "8b": (4096, 32, 32, 8, 14336),
}
WORDS = (
    "the model prefers short clear answers with one example and a friendly tone while the other rambles "
    "about history science cooking travel music code weather rivers mountains cities"
).split()


def synthetic_pairs(n: int, seed: int) -> list[PreferencePair]:
    """Chat-like lengths: prompts 20–400 words, completions 20–300 (about one token a word)."""
    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    return [PreferencePair(text(20, 400), text(20, 300), text(20, 300), i) for i in range(n)]


def build_model(shape: str, tokenizer_dir: Path, out: Path, device: str) -> Path:
    """A random-init llama of `shape`, or, for "default", the bundled default model's folder itself."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if shape == "default":
        return prepare_default_model(Path(DEFAULT_MODEL_CACHE))

    hidden, layers, heads, kv, inter = SHAPES[shape]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Built in the dtype it is saved in: an 8B model in fp32 would need ~28 GiB on the GPU just to be made. Both
    # variants load this folder through the same load_model (bf16 on CUDA), so the comparison is unchanged.
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    return out


class PeakMemory:
    """Peak GiB during a block: CUDA max allocated, or sampled RSS growth on CPU."""

    def __init__(self, device: str) -> None:
        self.device, self.peak_gib = device, 0.0

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            proc, self._stop, base = psutil.Process(), threading.Event(), psutil.Process().memory_info().rss
            self._peak = base

            def sample():
                while not self._stop.is_set():
                    self._peak = max(self._peak, proc.memory_info().rss)
                    time.sleep(0.005)

            self._base, self._thread = base, threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak_gib = torch.cuda.max_memory_allocated() / 2**30
        else:
            self._stop.set()
            self._thread.join()
            self.peak_gib = (self._peak - self._base) / 2**30


def run_ours(model_dir: Path, pairs, args, device: str, group_by_length: bool = True) -> tuple[float, dict]:
    """Seconds of one round, and whether it had to retry after running out of memory."""
    config = DPOConfig(
        group_by_length=group_by_length,
        batch_size=args.batch_size,
        epochs=1,
        max_length=args.max_length,
        learning_rate=5e-5,
        rpo_alpha=0.0,  # TRL's DPOTrainer runs plain DPO here: the same loss
        diagnostic_prompts=0,
        heldout_fraction=0.0,
        min_pairs=1,
        lora_r=16,
        lora_alpha=32,
        quantization="auto",
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_round(config, pairs, Path(tmp) / "round", model=str(model_dir), device=device)
        seconds = time.perf_counter() - start
        phases = result.metrics["phases"] | {"save": round(seconds - result.metrics["seconds"], 2)}
        return seconds, {"retried": result.metrics["oom_retry"], "phases": phases}


def run_trl(model_dir: Path, pairs, args, device: str, best: bool) -> tuple[float, dict]:
    import trl
    from datasets import Dataset
    from peft import LoraConfig

    from models import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    rows = trl_rows(pairs)  # the format prefloop exports
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=list(DPOConfig().target_modules), task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = load_model(str(model_dir), resolve_quantization("auto", device), device)
        options = dict(
            output_dir=tmp,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=1,
            max_length=args.max_length,
            learning_rate=5e-5,
            report_to=[],
            save_strategy="no",
            logging_steps=10_000,
            use_cpu=device == "cpu",
            bf16=uses_bf16(device, "auto", resolve_quantization("auto", device)),  # the dtype ours computes in
        )
        if best:
            options |= dict(precompute_ref_log_probs=True, gradient_checkpointing=False)
        trainer = trl.DPOTrainer(
            model=model,
            args=trl.DPOConfig(**options),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora,
        )
        trainer.train()
        return time.perf_counter() - start, {}


def out_of_memory(err: Exception) -> bool:
    """CUDA out of memory, or our round's error when its retry with half the micro-batch ran out too."""
    return isinstance(err, torch.OutOfMemoryError) or isinstance(err.__cause__, torch.OutOfMemoryError)


def free_memory(device: str) -> None:
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run_variant(name: str, fn, pairs: int, device: str) -> dict:
    """One variant's throughput and peak memory; running out of memory is a result too: it does not fit."""
    try:
        with PeakMemory(device) as memory:
            seconds, notes = fn()
    except (torch.OutOfMemoryError, TrainingError) as err:
        if not out_of_memory(err):
            raise
        print(f"{name:14s} out of memory", flush=True)
        return {"pairs_s": None, "seconds": None, "peak_gib": None}
    result = {"pairs_s": pairs / seconds, "seconds": seconds, "peak_gib": memory.peak_gib} | notes
    retried = "  (out of memory once: retried with half the micro-batch)" if notes.get("retried") else ""
    where = "  " + ", ".join(f"{k} {v:.1f} s" for k, v in notes["phases"].items()) if "phases" in notes else ""
    print(
        f"{name:14s} {result['pairs_s']:8.2f} pairs/s  {seconds:8.1f} s  "
        f"peak {memory.peak_gib:6.2f} GiB{retried}{where}",
        flush=True,
    )
    return result


def run_variants(args: argparse.Namespace, device: str) -> dict[str, dict]:
    tokenizer_dir = prepare_default_model(Path(args.model_cache)) if args.tokenizer is None else Path(args.tokenizer)
    pairs = synthetic_pairs(args.pairs, seed=0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(args.model, tokenizer_dir, Path(tmp) / "model", device)
        free_memory(device)
        if args.memory_limit_gib is not None:  # the cap is for the variants, not for making the model
            total = torch.cuda.get_device_properties(0).total_memory / 2**30
            torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_limit_gib / total))
        variants = {
            "ours": lambda: run_ours(model_dir, pairs, args, device),
            "ours_ungrouped": lambda: run_ours(model_dir, pairs, args, device, group_by_length=False),
            "trl_default": lambda: run_trl(model_dir, pairs, args, device, best=False),
            "trl_best": lambda: run_trl(model_dir, pairs, args, device, best=True),
        }
        for name, fn in variants.items():
            if name in args.variants:
                results[name] = run_variant(name, fn, args.pairs, device)
                free_memory(device)
    return results


def summarize(results: dict[str, dict], args: argparse.Namespace, device: str) -> dict:
    def figure(name: str, key: str):
        value = results.get(name, {}).get(key)
        return None if value is None else round(value, 3)

    def ratio(name: str):
        ours, other = figure("ours", "pairs_s"), figure(name, "pairs_s")
        return None if ours is None or other is None else round(ours / other, 3)

    for name in ("trl_default", "trl_best"):
        speedup = ratio(name)
        print(
            f"speedup vs {name:11s} {'n/a' if speedup is None else f'{speedup:.2f}x'} (our pairs/s ÷ theirs)",
            flush=True,
        )
    return {
        "model": args.model,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "pairs": args.pairs,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "memory_limit_gib": args.memory_limit_gib,
        **{
            f"{name}_pairs_s": figure(name, "pairs_s") for name in ("ours", "trl_default", "trl_best", "ours_ungrouped")
        },
        **{f"{name}_peak_gib": figure(name, "peak_gib") for name in ("ours", "trl_default", "trl_best")},
        "speedup_vs_trl_default": ratio("trl_default"),
        "speedup_vs_trl_best": ratio("trl_best"),
        "ours_retried": results.get("ours", {}).get("retried"),
        "ours_ungrouped_retried": results.get("ours_ungrouped", {}).get("retried"),
        "ours_phases_s": results.get("ours", {}).get("phases"),
        "cpu": cpu_flags(),
    }


def main(args: argparse.Namespace) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.memory_limit_gib is not None and device != "cuda":
        raise SystemExit("--memory-limit-gib caps CUDA memory; this machine has no CUDA GPU.")
    summary = summarize(run_variants(args, device), args, device)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=[*sorted(SHAPES), "default"], default="tiny")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument(
        "--variants",
        type=lambda text: text.split(","),
        default=["ours", "ours_ungrouped", "trl_default", "trl_best"],
        help="comma-separated, from ours, ours_ungrouped, trl_default, trl_best (default: all four)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument(
        "--model-cache", default=DEFAULT_MODEL_CACHE, help="where the default model (tokenizer) is cached"
    )
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder instead of the default model's")
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=None,
        help="CUDA: let every variant use at most this much GPU memory (e.g. 24, a 24 GB card); one that runs "
        "out is reported as out of memory",
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(parser.parse_args())
