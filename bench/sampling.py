"""Benchmark: how long labelers wait for a pair, and each serving backend's speed, side by side in one run.

    python -m bench.sampling --labelers 2                    # CPU, the bundled default model: eager and onnx
    python -m bench.sampling --model 1.7b --backends static  # CUDA, a random-init llama of that shape

For each backend in `--backends` (default: eager and onnx on CPU, static on CUDA), one after the other:
1. Throughput: its batched generation (`generate_tokens`) on the same prompts, settings and batch; two
   completions per prompt, new tokens counted up to EOS. The eager backend is also timed against plain eager
   `model.generate` (do_sample, top-p), the reference. The first call (which compiles, with the static
   backend) is timed apart as `first_call_s` / `compile_s`.
2. Adapter swap: converting and loading a LoRA adapter and making it the serving version.
3. Labelers: `--labelers` simulated people vote every 2–5 s through `Loop` (the code the UI calls); we time
   each vote → next pair on screen, and count the pairs per minute the background sampler delivers. With
   `--candidates N --selection S` the sampler draws N completions a prompt and shows two, as the app does.
Prints its figures, then one JSON line (with the CPU's AVX2 / AVX-512 / AMX flags).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.startup import cpu_flags
from labeling.loop import Loop
from labeling.prompts import starter_prompts
from labeling.sampler import PairSampler
from labeling.selection import STRATEGIES, PairSelection
from models import DEFAULT_MODEL_CACHE, prepare_default_model
from services import ServiceConfig
from serving import SamplingSettings, TorchPolicyServer, chat_text
from serving.base import until_stop
from serving.onnx_backend import OnnxPolicyServer
from storage import Store


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

    generated_before = loop.store.generations.count()
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
        "sampler_pairs_per_min": (loop.store.generations.count() - generated_before) / 2 / minutes,
    }


def completion_tokens(rows: list[list[int]], stops: frozenset[int]) -> int:
    """New tokens of each completion up to (without) its first stop token, summed."""
    return sum(len(until_stop(row, stops)) for row in rows)


def throughput(server, prompts: list[str], settings: SamplingSettings, repeats: int) -> dict:
    """Tokens per second of the server's generate path, and, for a torch server, of eager `model.generate` on the
    same model, prompts, settings and batch, interleaved. Both count the new tokens of each completion up to its
    EOS. The first call is timed apart: with the static backend it compiles the decoding step (`compile_s` =
    first call - a timed one)."""

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

    contenders = {"ours": ours}
    if isinstance(server, TorchPolicyServer):  # the reference runs on the torch model itself
        contenders["hf_generate"] = hf_generate_fn(server, prompts, settings)
    _, first_call_s = timed(ours)
    for name, fn in contenders.items():
        if name != "ours":
            timed(fn)  # warm-up
    totals = {name: [0, 0.0] for name in contenders}
    for i in range(repeats):  # interleaved, alternating which goes first
        for name in list(contenders)[:: 1 if i % 2 else -1]:
            tokens, seconds = timed(contenders[name])
            totals[name][0] += tokens
            totals[name][1] += seconds
    rates = {name: tokens / seconds for name, (tokens, seconds) in totals.items()}
    figures = {
        "ours_tok_s": rates["ours"],
        "first_call_s": first_call_s,
        "compile_s": max(0.0, first_call_s - totals["ours"][1] / repeats),
    }
    if "hf_generate" in rates:
        figures |= {
            "hf_generate_tok_s": rates["hf_generate"],
            "speedup_vs_hf_generate": rates["ours"] / rates["hf_generate"],
        }
    return figures


def hf_generate_fn(server: TorchPolicyServer, prompts: list[str], settings: SamplingSettings):
    """Plain eager `model.generate` (do_sample, top-p alone) on the server's model and the same batch; returns
    the new tokens up to EOS, summed."""
    tok = server.tokenizer
    batch = tok([chat_text(tok, p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    batch = batch.to(server.device)
    stops = server.stops

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

    return hf_generate


def make_adapter(model_dir: str, folder: str) -> str:
    """A LoRA adapter of the rounds' default shape (r 16 on every projection) for `model_dir`, in `folder`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora).save_pretrained(folder)
    return folder


def adapter_swap_ms(server, adapter: str) -> float:
    """Converting (if the backend does), loading and serving a round's adapter, the way the app does after a
    round; the first load is a warm-up (it imports the adapter machinery)."""
    server.serve("warmup", adapter)
    start = time.perf_counter()
    server.serve("bench_round", adapter)
    elapsed = time.perf_counter() - start
    server.serve("base")
    return 1000 * elapsed


def open_server(backend: str, model_dir: str, args: argparse.Namespace):
    if backend == "onnx":
        return OnnxPolicyServer(model_dir, cache_dir=args.model_cache)
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    rows = args.candidates * args.batch_prompts  # as the app sizes its batch: each prompt's candidates
    return TorchPolicyServer(model_dir, backend=backend, dtype=dtype, batch_rows=rows)


def run_backend(backend: str, model_dir: str, adapter: str, args: argparse.Namespace) -> dict:
    """One backend's figures: throughput, adapter swap, and labelers voting through the loop."""
    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens)
    store = Store()
    store.prompts.add_many(starter_prompts(), source="starter")
    server = open_server(backend, model_dir, args)
    prompts = [p.text for p in store.prompts.list(limit=args.batch_prompts)]
    figures = throughput(server, prompts, settings, args.repeats)
    dtype = str(server.dtype).removeprefix("torch.")
    reference = (
        f" · eager generate {figures['hf_generate_tok_s']:.1f} tok/s · {figures['speedup_vs_hf_generate']:.2f}×"
        if "hf_generate_tok_s" in figures
        else ""
    )
    print(
        f"[{backend}] ours ({dtype}) {figures['ours_tok_s']:.1f} tok/s{reference} "
        f"({args.batch_prompts} prompts × 2, {args.max_new_tokens} new tokens); "
        f"first call {figures['first_call_s']:.1f} s, compile ≈ {figures['compile_s']:.1f} s",
        flush=True,
    )
    figures["adapter_swap_ms"] = adapter_swap_ms(server, adapter)
    print(f"[{backend}] adapter swap {figures['adapter_swap_ms']:.0f} ms", flush=True)
    selection = PairSelection(args.candidates, args.selection, args.control_share)
    sampler = PairSampler(
        store, server, depth=args.queue_depth, batch_prompts=args.batch_prompts, seed=0, selection=selection
    )
    sampler.set_settings(settings)
    loop = Loop(store, server, sampler)
    sampler.start()
    time.sleep(args.warmup_s)  # the app starts filling the queue at launch, before anyone votes
    figures |= simulate_labelers(loop, args.labelers, args.votes, seed=0)
    sampler.stop()
    if hasattr(server, "close"):
        server.close()
    print(
        f"[{backend}] vote → next pair p50 {figures['vote_to_pair_p50_ms']:.0f} ms · "
        f"p95 {figures['vote_to_pair_p95_ms']:.0f} ms · max {figures['vote_to_pair_max_ms']:.0f} ms · labelers got "
        f"{figures['pairs_per_min']:.1f} pairs/min, the sampler made {figures['sampler_pairs_per_min']:.1f}",
        flush=True,
    )
    return {"device": server.device, "dtype": dtype} | {k: round(v, 2) for k, v in figures.items()}


def main(args: argparse.Namespace) -> dict:
    if args.model == "default":
        model_dir = str(prepare_default_model(Path(args.model_cache)))
    else:
        from bench.dpo_vs_trl import build_model

        tmp = tempfile.mkdtemp()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        tokenizer_dir = Path(args.tokenizer) if args.tokenizer else prepare_default_model(Path(args.model_cache))
        model_dir = str(build_model(args.model, tokenizer_dir, Path(tmp), device))
    backends = args.backends or (["static"] if torch.cuda.is_available() else ["eager", "onnx"])
    with tempfile.TemporaryDirectory() as tmp:
        adapter = make_adapter(model_dir, tmp)
        results = {backend: run_backend(backend, model_dir, adapter, args) for backend in backends}
    summary = {
        "model": args.model,
        "labelers": args.labelers,
        "max_new_tokens": args.max_new_tokens,
        "batch_prompts": args.batch_prompts,
        "queue_depth": args.queue_depth,
        "selection": {"candidates": args.candidates, "strategy": args.selection, "control_share": args.control_share},
        "cpu": cpu_flags(),
        "cores": os.cpu_count(),
        "backends": results,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", choices=["default", "tiny", "1.7b", "8b"])
    parser.add_argument("--model-cache", default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder instead of the default model's")
    parser.add_argument("--labelers", type=int, default=1)
    parser.add_argument(
        "--votes", type=int, default=40, help="votes per labeler (more than the queue holds: the sampler must keep up)"
    )
    # what the app samples with unless told otherwise
    parser.add_argument("--max-new-tokens", type=int, default=SamplingSettings().max_new_tokens)
    parser.add_argument("--batch-prompts", type=int, default=ServiceConfig().sample_batch)
    parser.add_argument("--queue-depth", type=int, default=ServiceConfig().queue_depth)
    parser.add_argument("--candidates", type=int, default=ServiceConfig().candidates, help="completions per prompt")
    parser.add_argument("--selection", default=ServiceConfig().selection, choices=list(STRATEGIES))
    parser.add_argument("--control-share", type=float, default=ServiceConfig().control_share)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--backends",
        type=lambda text: text.split(","),
        default=None,
        help="comma-separated, from eager, static, onnx (default: eager,onnx on CPU; static on CUDA)",
    )
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--warmup-s", type=float, default=30.0)
    main(parser.parse_args())
