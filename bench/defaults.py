"""Experiment: which round settings move the default model toward a consistent taste without losing fluency?

    python -m bench.defaults --pairs 40

A simulated labeler with one clear taste (the shorter of two completions is better) labels `--pairs` pairs
sampled from the base model, exactly as the app samples them. Each candidate config then trains one round
from the base on those pairs, and the round's policy is sampled on prompts it never saw. We report:
- taste: mean completion length in tokens (lower = moved toward the labeler) and how often it beats the base
  in a blind length comparison on the same prompt;
- fluency: distinct-2 (unique bigrams / bigrams) and the share of repeated 4-grams.
Prints a table, then one JSON line. docs/benchmarks.md records the results that chose the defaults.

Prompts are split as the app meets them (`--prompt-split random`, the default): the app samples pairs from the
whole prompt pool in random order, and the prompts a round is judged on are drawn from the same pool (held out,
like eval-only prompts). `--prompt-split ordered` is the split this benchmark used before: the starter file's
first prompts train and its last ones evaluate, which are other categories (explanations, advice and stories
train; opinions, comparisons, brainstorming and jokes evaluate), so it measures how far a taste carries to
other kinds of prompt (docs/benchmarks.md has both, from one run).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

from bench.startup import cpu_flags
from labeling.prompts import starter_prompts
from models import prepare_default_model
from serving import PolicyServer, SamplingSettings
from storage.labels import PreferencePair
from training.cli import DEFAULT_MODEL_CACHE
from training.config import DPOConfig
from training.trainer import run_round

CANDIDATES = {
    # names become adapter names, which may not contain dots
    "beta0_1-lr5e-4-ep2": dict(beta=0.1, learning_rate=5e-4, epochs=2),
    "beta0_1-lr1e-3-ep3": dict(beta=0.1, learning_rate=1e-3, epochs=3),
    "beta0_1-lr2e-3-ep2": dict(beta=0.1, learning_rate=2e-3, epochs=2),
    "beta0_05-lr1e-3-ep3": dict(beta=0.05, learning_rate=1e-3, epochs=3),
}


def fluency(texts: list[str], tokenizer) -> dict:
    bigrams, fourgrams = [], []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        bigrams += list(zip(ids, ids[1:], strict=False))
        grams = list(zip(ids, ids[1:], ids[2:], ids[3:], strict=False))
        fourgrams.append(1 - len(set(grams)) / len(grams) if grams else 0.0)
    return {"distinct_2": len(set(bigrams)) / max(len(bigrams), 1), "repeated_4gram": statistics.mean(fourgrams)}


def lengths(texts: list[str], tokenizer) -> list[int]:
    return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def split_prompts(prompts: list[str], n_train: int, n_eval: int, how: str, seed: int = 0) -> tuple[list, list]:
    """(train, eval) prompts, disjoint: drawn at random from the whole pool as the app draws them ("random"), or
    the pool's first n_train and last n_eval ("ordered": other categories in the starter file)."""
    if n_train + n_eval > len(prompts):
        raise ValueError(f"--pairs + --eval-prompts must be at most {len(prompts)} (the starter prompts)")
    if how == "ordered":
        return prompts[:n_train], prompts[len(prompts) - n_eval :]
    shuffled = random.Random(seed).sample(prompts, len(prompts))
    return shuffled[n_eval : n_eval + n_train], shuffled[:n_eval]


def main(args: argparse.Namespace) -> dict:
    model = str(prepare_default_model(Path(args.model_cache)))
    server = PolicyServer(model, device="cpu")
    tok = server.tokenizer
    train_prompts, eval_prompts = split_prompts(starter_prompts(), args.pairs, args.eval_prompts, args.prompt_split)
    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)

    pairs = []
    for i in range(0, len(train_prompts), 8):
        batch = train_prompts[i : i + 8]
        for j, (prompt, (a, b)) in enumerate(zip(batch, server.generate(batch, 2, settings), strict=True)):
            short, long = sorted((a, b), key=lambda t: len(tok(t)["input_ids"]))
            if short != long:
                pairs.append(PreferencePair(prompt, short, long, judgement_id=i + j))
    eval_settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=1)
    base_out = [c[0] for c in server.generate(eval_prompts, 1, eval_settings)]
    base_len = lengths(base_out, tok)
    rows = {"base": {"mean_tokens": statistics.mean(base_len), "shorter_than_base": 0.0} | fluency(base_out, tok)}
    candidates = {name: CANDIDATES[name] for name in args.configs}
    with tempfile.TemporaryDirectory() as tmp:
        for name, values in candidates.items():
            config = DPOConfig(
                batch_size=4, heldout_fraction=0.2, min_pairs=4, seed=0, compute_dtype=args.compute_dtype, **values
            )
            result = run_round(config, pairs, Path(tmp) / name, model=model, device="cpu")
            server.serve(name, str(result.adapter_dir))
            out = [c[0] for c in server.generate(eval_prompts, 1, eval_settings)]
            new_len = lengths(out, tok)
            rows[name] = {
                "mean_tokens": statistics.mean(new_len),
                "shorter_than_base": sum(n < b for n, b in zip(new_len, base_len, strict=True)) / len(new_len),
                "heldout_accuracy": result.metrics["heldout_after"]["accuracy"],
                "train_accuracy": result.metrics["train"]["accuracy"],
            } | fluency(out, tok)
            server.serve("base")
            print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items()}), flush=True)
    print(f"{'config':20s} {'tokens':>7s} {'shorter':>8s} {'distinct2':>9s} {'rep4':>6s}")
    for name, row in rows.items():
        print(
            f"{name:18s} {row['mean_tokens']:7.1f} {row['shorter_than_base']:8.2f} {row['distinct_2']:9.3f} "
            f"{row['repeated_4gram']:6.3f}"
        )
    summary = {
        "pairs": len(pairs),
        "eval_prompts": len(eval_prompts),
        "max_new_tokens": args.max_new_tokens,
        "prompt_split": args.prompt_split,
        "cpu": cpu_flags(),
        "results": {k: {m: round(v, 3) for m, v in r.items()} for k, r in rows.items()},
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--eval-prompts", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--model-cache", default=DEFAULT_MODEL_CACHE)
    parser.add_argument(
        "--compute-dtype",
        default="float32",
        choices=["auto", "float32", "bfloat16"],
        help="the rounds' compute dtype; the tables in docs/benchmarks.md were measured in float32",
    )
    parser.add_argument("--prompt-split", default="random", choices=["random", "ordered"], help="see above")
    parser.add_argument("--configs", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    main(parser.parse_args())
