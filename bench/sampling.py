"""Benchmark: how long labelers wait for a pair, and our sampler's speed against plain `model.generate`.

    python -m bench.sampling                         # CPU, the bundled default model
    python -m bench.sampling --model 1.7b            # CUDA, a random-init llama of that shape

1. Labelers: `--labelers` simulated people vote every 2–5 s through `Loop` (the code the UI calls); we time
   each vote → next pair on screen, and count the pairs per minute the background sampler delivers.
2. Throughput: the sampler's batched generation (`PolicyServer.generate_tokens`, with the server's backend:
   static on CUDA, eager on CPU; `--backend` to choose) vs plain eager `model.generate` (do_sample, top-p) on
   the same model, dtype, prompts, settings and batch; both sample two completions per prompt. Our first call
   (which compiles, with the static backend) is timed apart as `first_call_s` / `compile_s`.
3. Adapter swap: loading a LoRA adapter into the serving model and making it active.
Prints its figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from labeling.loop import Loop
from labeling.prompts import starter_prompts
from labeling.sampler import PairSampler
from models import prepare_default_model
from serving import PolicyServer, SamplingSettings, chat_text
from storage import Store
from training.cli import DEFAULT_MODEL_CACHE


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def simulate_labelers(loop: Loop, labelers: int, votes_each: int, seed: int) -> dict:
    """Each labeler: look at a pair for 2–5 s, vote, wait for the next pair. Returns latency stats."""
    waits: list[float] = []
    lock = threading.Lock()

    def person(i: int) -> None:
        rng = random.Random(seed + i)
        pair = loop.next_pair()
        for _ in range(votes_each):
            time.sleep(rng.uniform(2, 5))
            start = time.perf_counter()
            loop.vote(pair, rng.choice(["left", "right"]), labeler=f"sim-{i}")
            pair = loop.next_pair()
            with lock:
                waits.append(time.perf_counter() - start)

    generated_before = loop.store.count_generations()
    start = time.perf_counter()
    threads = [threading.Thread(target=person, args=(i,)) for i in range(labelers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    minutes = (time.perf_counter() - start) / 60
    return {
        "vote_to_pair_p50_ms": 1000 * statistics.median(waits),
        "vote_to_pair_p95_ms": 1000 * percentile(waits, 0.95),
        "vote_to_pair_max_ms": 1000 * max(waits),
        "pairs_per_min": len(waits) / minutes,
        "sampler_pairs_per_min": (loop.store.count_generations() - generated_before) / 2 / minutes,
    }


def completion_tokens(rows: list[list[int]], stops: set[int]) -> int:
    """New tokens of each completion up to (without) its first stop token, summed."""
    return sum(len(list(itertools.takewhile(lambda t: t not in stops, row))) for row in rows)


def throughput(server: PolicyServer, prompts: list[str], settings: SamplingSettings, repeats: int) -> dict:
    """Tokens per second: our generate path (the server's backend) vs eager `model.generate` on the same model,
    prompts, settings and batch. Both count the new tokens of each completion up to its EOS. Our first call is
    timed apart: with the static backend it compiles the decoding step (`compile_s` = first call - a timed one)."""
    tok = server.tokenizer
    batch = tok([chat_text(tok, p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    batch = batch.to(server.device)
    eos = server.model.generation_config.eos_token_id
    stops = {tok.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}

    def hf_generate() -> int:
        with torch.no_grad():
            out = server.model.generate(
                **batch,
                do_sample=True,
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=0,  # as ours: top-p alone
                max_new_tokens=settings.max_new_tokens,
                num_return_sequences=2,
                pad_token_id=tok.pad_token_id,
            )
        return completion_tokens(out[:, batch["input_ids"].shape[1] :].tolist(), stops)

    def ours() -> int:
        return sum(len(c) for pair in server.generate_tokens(prompts, n=2, settings=settings) for c in pair)

    def timed(fn) -> tuple[int, float]:
        if server.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        tokens = fn()
        if server.device.startswith("cuda"):
            torch.cuda.synchronize()
        return tokens, time.perf_counter() - start

    _, first_call_s = timed(ours)
    timed(hf_generate)  # warm-up
    totals = {"ours": [0, 0.0], "hf_generate": [0, 0.0]}
    for i in range(repeats):  # interleaved, alternating which goes first
        for name in ("ours", "hf_generate") if i % 2 else ("hf_generate", "ours"):
            tokens, seconds = timed(ours if name == "ours" else hf_generate)
            totals[name][0] += tokens
            totals[name][1] += seconds
    rates = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    return {
        "ours_tok_s": rates["ours"],
        "hf_generate_tok_s": rates["hf_generate"],
        "speedup_vs_hf_generate": rates["ours"] / rates["hf_generate"],
        "first_call_s": first_call_s,
        "compile_s": max(0.0, first_call_s - totals["ours"][1] / repeats),
    }


def adapter_swap_ms(server: PolicyServer, model_dir: str) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        lora = LoraConfig(
            r=16,
            lora_alpha=32,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            task_type="CAUSAL_LM",
        )
        get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora).save_pretrained(tmp)
        server.serve("warmup", tmp)  # the first load also imports peft's adapter machinery
        start = time.perf_counter()
        server.serve("bench_round", tmp)
        elapsed = time.perf_counter() - start
        server.serve("base")
        return 1000 * elapsed


def main(args: argparse.Namespace) -> dict:
    if args.model == "default":
        model_dir = str(prepare_default_model(Path(args.model_cache)))
    else:
        from bench.dpo_vs_trl import build_model

        tmp = tempfile.mkdtemp()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer_dir = Path(args.tokenizer) if args.tokenizer else prepare_default_model(Path(args.model_cache))
        model_dir = str(build_model(args.model, tokenizer_dir, Path(tmp), device))
    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens)
    store = Store()
    store.add_prompts(starter_prompts(), source="starter")
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    server = PolicyServer(model_dir, backend=args.backend, dtype=dtype, batch_rows=2 * args.batch_prompts)
    prompts = [p.text for p in store.list_prompts(limit=args.batch_prompts)]
    figures = throughput(server, prompts, settings, args.repeats)
    print(
        f"ours ({server.backend}, {str(server.dtype).removeprefix('torch.')}) {figures['ours_tok_s']:.1f} tok/s · "
        f"eager generate {figures['hf_generate_tok_s']:.1f} tok/s · {figures['speedup_vs_hf_generate']:.2f}× "
        f"({args.batch_prompts} prompts × 2, {args.max_new_tokens} new tokens); "
        f"first call {figures['first_call_s']:.1f} s, compile ≈ {figures['compile_s']:.1f} s",
        flush=True,
    )
    figures["adapter_swap_ms"] = adapter_swap_ms(server, model_dir)
    print(f"adapter swap {figures['adapter_swap_ms']:.0f} ms", flush=True)
    sampler = PairSampler(store, server, depth=args.queue_depth, batch_prompts=args.batch_prompts, seed=0)
    sampler.set_settings(settings)
    loop = Loop(store, server, sampler)
    sampler.start()
    time.sleep(args.warmup_s)  # the app starts filling the queue at launch, before anyone votes
    figures |= simulate_labelers(loop, args.labelers, args.votes, seed=0)
    sampler.stop()
    print(
        f"vote → next pair p50 {figures['vote_to_pair_p50_ms']:.0f} ms · p95 {figures['vote_to_pair_p95_ms']:.0f} ms "
        f"· max {figures['vote_to_pair_max_ms']:.0f} ms · labelers got {figures['pairs_per_min']:.1f} pairs/min, "
        f"the sampler made {figures['sampler_pairs_per_min']:.1f}",
        flush=True,
    )
    summary = {
        "model": args.model,
        "device": server.device,
        "backend": server.backend,
        "dtype": str(server.dtype).removeprefix("torch."),
        "labelers": args.labelers,
        "max_new_tokens": args.max_new_tokens,
        "batch_prompts": args.batch_prompts,
        "queue_depth": args.queue_depth,
    } | {k: round(v, 2) for k, v in figures.items()}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", choices=["default", "tiny", "1.7b", "8b"])
    parser.add_argument("--model-cache", default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder instead of the default model's")
    parser.add_argument("--labelers", type=int, default=1)
    parser.add_argument("--votes", type=int, default=15, help="votes per labeler")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-prompts", type=int, default=4)
    parser.add_argument("--queue-depth", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backend", default="auto", choices=["auto", "eager", "static"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--warmup-s", type=float, default=30.0)
    main(parser.parse_args())
