"""Benchmark: how long labelers wait for their next pair while a round trains, with the round in a thread of the
app's process (how the app ran rounds before) and in its own process (how it runs them now: at a lower priority,
and on a CPU paused while the sampler samples a batch).

    python -m bench.round_load                      # default model, 2 labelers, 24 chat-length pairs, 2 epochs
    python -m bench.round_load --modes process      # one mode only ("none": the labelers with no round, 180 s)

The app's own services (`open_services`: a store file, the default model, the sampler with queue 8, 4 prompts a
batch, 128 new tokens, the round runner) serve while simulated labelers vote every 2–5 s through `Loop`; each mode
trains the same pairs with the same config; "none" is the labelers alone, the reference. We time vote → next pair
only while the round runs. Prints each mode's figures and ends with one JSON line (with the CPU's
features).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.sampling import percentile
from bench.startup import cpu_flags
from labeling.loop import Loop
from models import DEFAULT_MODEL_CACHE
from services import ServiceConfig, Services, open_services
from serving import SamplingSettings
from storage import Store
from training.config import DPOConfig
from training.plan import plan_round
from training.trainer import run_round


def add_labels(store: Store, n: int, seed: int = 0) -> None:
    """`n` left votes on chat-length pairs (prompts 20–200 words, completions 20–250), as a labeler leaves them."""
    rng = random.Random(seed)
    words = "the model answers each question with care and a short clear example of what it means".split()

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))

    for i in range(n):
        prompt = store.prompts.add(f"Question {i}: {text(20, 200)}?", source="bench")
        good, bad = (store.generations.add(prompt, "base", text(20, 250), {}) for _ in range(2))
        store.judgements.add(prompt, good, bad, "left", "bench", "base")


NO_ROUND_S = 180.0  # how long mode "none" lets the labelers vote


def labelers_during(loop: Loop, labelers: int, busy: threading.Event, seed: int) -> list[float]:
    """Labelers vote every 2–5 s while `busy` is set; returns each vote → next pair wait, in seconds."""
    waits: list[float] = []
    lock = threading.Lock()

    def person(i: int) -> None:
        rng = random.Random(seed + i)
        pair = loop.next_pair()
        while busy.is_set():
            time.sleep(rng.uniform(2, 5))
            start = time.perf_counter()
            loop.vote(pair, "skip", labeler=f"sim-{i}")
            pair = loop.next_pair()
            if busy.is_set():
                with lock:
                    waits.append(time.perf_counter() - start)

    threads = [threading.Thread(target=person, args=(i,)) for i in range(labelers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return waits


def one_mode(mode: str, services: Services, config: DPOConfig, runs: Path, labelers: int) -> dict:
    loop = services.loop
    busy = threading.Event()
    busy.set()
    started = time.perf_counter()
    generated = loop.store.generations.count()
    if mode == "none":  # the reference: the same labelers with no round, for as long as a round takes
        threading.Timer(NO_ROUND_S, busy.clear).start()
    elif mode == "thread":  # how the app ran rounds before: run_round on a thread of its own process
        plan = plan_round(loop.store, config)

        def work() -> None:
            try:
                run_round(config, plan.items, runs / "round_001", model=services.model, device="cpu")
            finally:
                busy.clear()

        threading.Thread(target=work, name="round", daemon=True).start()
    else:
        runner = services.runner  # as the Train tab starts it: its own process, paused while batches sample
        runner.start(config)
        threading.Thread(target=lambda: (runner.wait(), busy.clear()), daemon=True).start()
    waits = labelers_during(loop, labelers, busy, seed=0)
    minutes = (time.perf_counter() - started) / 60
    figures = {
        "round_s": 60 * minutes,
        "votes": len(waits),
        "vote_to_pair_p50_ms": 1000 * statistics.median(waits),
        "vote_to_pair_p95_ms": 1000 * percentile(waits, 0.95),
        "vote_to_pair_max_ms": 1000 * max(waits),
        "sampler_pairs_per_min": (loop.store.generations.count() - generated) / 2 / minutes,
    }
    what = "no round" if mode == "none" else f"round in a {mode}"
    print(
        f"{what}: {figures['round_s']:.1f} s · {len(waits)} votes · vote → next pair "
        f"p50 {figures['vote_to_pair_p50_ms']:.0f} ms, p95 {figures['vote_to_pair_p95_ms']:.0f} ms, "
        f"max {figures['vote_to_pair_max_ms']:.0f} ms · the sampler made {figures['sampler_pairs_per_min']:.1f} "
        "pairs/min",
        flush=True,
    )
    return {f"{mode}_{k}": round(v, 2) for k, v in figures.items()}


def main(args: argparse.Namespace) -> dict:
    summary: dict = {"labelers": args.labelers, "pairs": args.pairs, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:  # the app's own composition: store file, model, sampler, runner
        config = ServiceConfig(
            db=f"{tmp}/bench.duckdb",
            model_cache=args.model_cache,
            runs=f"{tmp}/runs",
            exports=f"{tmp}/exports",
            device="cpu",
            queue_depth=args.queue_depth,
            sample_batch=args.batch_prompts,
        )
        services = open_services(config)
        services.labeling.set_sampling(SamplingSettings(max_new_tokens=args.max_new_tokens))
        add_labels(services.store, args.pairs)
        round_config = DPOConfig(epochs=args.epochs, batch_size=4, continue_from_serving=False)
        for mode in args.modes:
            time.sleep(args.warmup_s)  # a full queue before the round starts, as in the app between rounds
            summary |= one_mode(mode, services, round_config, Path(tmp) / "thread-runs", args.labelers)
        dtype = str(services.loop.server.dtype)
        services.close()
    summary |= {"cpu_flags": cpu_flags(), "torch": torch.__version__, "serving_dtype": dtype}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-cache", default=DEFAULT_MODEL_CACHE)
    parser.add_argument(
        "--modes", nargs="+", default=["none", "thread", "process"], choices=["none", "thread", "process"]
    )
    parser.add_argument("--labelers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-prompts", type=int, default=4)
    parser.add_argument("--queue-depth", type=int, default=8)
    parser.add_argument("--warmup-s", type=float, default=30.0)
    main(parser.parse_args())
