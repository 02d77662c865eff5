"""Does a round learn what its labelers prefer, and stay fluent? Simulated labelers of several tastes, judged
on prompts the round never saw.

    python -m bench.tastes                          # every taste, 40 labels, the old and the current defaults
    python -m bench.tastes --quick                  # 16 prompts x 1 seed for the judging (~1/4 of the sampling)
    python -m bench.tastes --labels 20 40 80 --tastes shorter casual --configs default
    python -m bench.tastes --candidates 4 --selection spread    # labels on pairs the app's --selection would show
    python -m bench.tastes --tastes plain --configs default self-rewarded --keep-rounds /tmp/rounds
    python -m bench.tastes --selection random spread --labels 20 40 80 --repeats 3   # labels a strategy saves
    python -m bench.tastes --selection random spread committee --labels 20 40 --random-labels 40 --results r.jsonl

Each simulated labeler has one deterministic taste (TASTES below: length both ways, format, tone, plain words
and staying on topic). Pairs are sampled from the base exactly as the app samples them (the serving backend
this CPU gets, two completions a prompt at the app's settings), shown with random sides, and judged by the
taste: the better one is chosen, or a tie (never trained on) when the taste cannot tell them apart. With
`--candidates N --selection S` each prompt gets N completions and the two shown are picked as the app's sampler
picks them (labeling/selection.py, its random control slice included); a strategy that learns from the labels
(committee) picks each taste its own pairs, refitted every 8 prompts on the taste's verdicts so far, as the app's
sampler refits before each batch it samples ahead. For each
taste and number of labels, each config (CONFIGS) trains one round from the base on those labels; then the
round and the base answer the judging prompts (disjoint from the labels' prompts) with the same settings and
seed per prompt, `--seeds` times each. Measured:

- win rate: the taste judges the round's answer against the base's on each prompt and seed (a tie counts
  half), with a 95 % Wilson interval;
- fluency: mean NLL per token of each side's answers under the base model given the prompt (the base's own
  answers are the reference; gibberish scores far above them), the share of letters in a script the prompt
  does not use, distinct-2, the share of answers with a repeated 4-gram, mean length, KL(round || base)
  per token on the round's own answers, and the share of its answers with a word the base would not write
  (a token the round made far likelier than the base does: training.diagnose.lifted), with some to read;
- the health gate a finished round passes before it serves (`training/gate.py`), on these numbers and the
  round's held-out preference scores: `served` and its reasons.

With several `--selection` strategies each labels pairs of its own (random: two of two, as the app by default;
the others: two of `--candidates`, 4 unless given) and trains the defaults' rounds on the first n of them for
each n of `--labels`; `--repeats` does it all again on other prompts, samples, sides and seed. The JSON then has,
per strategy, `labels_to_match_random_40`: the labels it needs to reach random's mean win rate at 40, per taste
the median and range over the repeats and their mean over tastes (evaluation/label_savings.py).

Prints a row per run as it finishes, a table, and one final JSON line. With `--results FILE` each finished run
is also appended to FILE, and the runs FILE already has with the same settings (model, CPU, engines, judging,
seed, candidates, config) are read instead of run again, so a comparison of many hours can stop and go on. Runs
go taste by taste within a repeat, every strategy of a taste together. docs/benchmarks.md has the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.startup import cpu_flags
from evaluation.arena import win_rate
from evaluation.diagnostics import distinct_n, foreign_script_share, kl_per_token, mean_nll, repeated_ngram_rate
from evaluation.label_savings import compare_strategies
from labeling.committee import fit_committee
from labeling.prompts import starter_prompts
from labeling.selection import LEARNS_FROM_LABELS, STRATEGIES, PairSelection, choose
from models import DEFAULT_MODEL_CACHE, load_model, prepare_default_model
from models.chat import prompt_ids
from serving import SamplingSettings, open_policy_server
from serving.autochoice import choice_key
from storage.labels import PreferencePair
from training.config import DPOConfig
from training.diagnose import lifted, token_logps
from training.gate import health_check
from training.trainer import run_round

WORD = re.compile(r"[A-Za-z']+")
STOPWORDS = set(
    "a an the is are was were be do does did what why how when where which who to of in on at for and or but "
    "with as if i me my we our you your it its this that these those explain give write describe tell about "
    "some one two three can could would should will please like make".split()
)


def _words(text: str) -> list[str]:
    return WORD.findall(text)


def _per_100_words(count: int, text: str) -> float:
    return 100 * count / max(len(_words(text)), 1)


def n_words(prompt: str, text: str) -> float:
    return len(_words(text))


def structure(prompt: str, text: str) -> float:
    """Paragraphs plus list items: how broken up an answer is."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    items = [line for line in text.splitlines() if re.match(r"\s*([-*\u2022]|\d+[.)])\s", line)]
    return len(paragraphs) + len(items)


def casual(prompt: str, text: str) -> float:
    """Talks to the reader: 'you' / 'your' and contractions per 100 words."""
    words = [w.lower() for w in _words(text)]
    hits = sum(w in ("you", "your", "yours", "you're", "you'll", "you've") for w in words)
    hits += sum("'" in w and not w.endswith("'s") and not w.startswith("you") for w in words)
    return _per_100_words(hits, text)


def plain_words(prompt: str, text: str) -> float:
    """Short words: minus the mean letters per word (higher is plainer)."""
    words = _words(text)
    return -statistics.mean(len(w) for w in words) if words else float("-inf")


def on_topic(prompt: str, text: str) -> float:
    """Share of the prompt's content words that the answer's first 40 words use."""
    wanted = {w.lower() for w in _words(prompt)} - STOPWORDS
    used = {w.lower() for w in _words(text)[:40]}
    return len(wanted & used) / len(wanted) if wanted else 0.0


@dataclass(frozen=True)
class Taste:
    """A simulated labeler: `score` (higher is better, or lower with `lower_wins`); two answers whose scores
    differ by no more than `tie` (absolute, or relative with `relative`) are a tie."""

    kind: str
    describe: str
    score: Callable[[str, str], float]
    tie: float
    lower_wins: bool = False
    relative: bool = False

    def judge(self, prompt: str, a: str, b: str) -> str:
        """'a', 'b' or 'tie'."""
        sa, sb = self.score(prompt, a), self.score(prompt, b)
        if self.lower_wins:
            sa, sb = -sa, -sb
        margin = self.tie * max(abs(sa), abs(sb)) if self.relative else self.tie
        if abs(sa - sb) <= margin or sa == sb:
            return "tie"
        return "a" if sa > sb else "b"


TASTES = {
    "shorter": Taste("length", "fewer words (within 10 %: a tie)", n_words, 0.10, lower_wins=True, relative=True),
    "longer": Taste("length", "more words (within 10 %: a tie)", n_words, 0.10, relative=True),
    "structured": Taste("format", "more paragraphs and list items (equal: a tie)", structure, 0.0),
    "casual": Taste("tone", "talks to the reader: 'you' and contractions per 100 words (within 0.5)", casual, 0.5),
    "plain": Taste("tone", "plain words: fewer letters per word (within 0.1)", plain_words, 0.1),
    "on_topic": Taste(
        "content", "uses the prompt's own content words in its first 40 words (within 5 points)", on_topic, 0.05
    ),
}
CHOSEN_ON = ("casual", "on_topic", "plain")  # the tastes the defaults were chosen on; the others only report

OLD_DEFAULTS = dict(beta=0.05, learning_rate=1e-3, epochs=3, rpo_alpha=0.0)  # the Train tab's before 2026-12-06
CONFIGS = {  # names become adapter names, which may not contain dots
    "old": OLD_DEFAULTS,
    "default": {},  # DPOConfig's defaults as they are now
    "dpo-lr1e-4": dict(beta=0.1, learning_rate=1e-4, epochs=2, rpo_alpha=0.0),
    "rpo-lr5e-4-ep3": dict(beta=0.1, learning_rate=5e-4, epochs=3, rpo_alpha=1.0),
    "rpo-lr1e-3-ep2": dict(beta=0.1, learning_rate=1e-3, epochs=2, rpo_alpha=1.0),
    "rpo-lr1e-3-ep3": dict(beta=0.1, learning_rate=1e-3, epochs=3, rpo_alpha=1.0),
    "rpo-alpha02": dict(beta=0.05, learning_rate=1e-3, epochs=3, rpo_alpha=0.2),
    "rpo-alpha05": dict(beta=0.05, learning_rate=1e-3, epochs=3, rpo_alpha=0.5),
    "rpo-alpha05-lr2e-3": dict(beta=0.05, learning_rate=2e-3, epochs=3, rpo_alpha=0.5),
    "dpop-5": dict(beta=0.05, learning_rate=1e-3, epochs=3, rpo_alpha=0.0, dpop_lambda=5.0),
    "beta02-ep4-rpo05": dict(beta=0.02, learning_rate=1e-3, epochs=4, rpo_alpha=0.5),
    "ipo-b1": dict(loss_type="ipo", beta=1.0),  # the defaults with IPO: per-token log-ratio gap aimed at 0.5 nats
    "cdpo-01": dict(label_smoothing=0.1),  # the defaults with conservative DPO: a label is wrong 10 % of the time
    "heldout10": dict(heldout_fraction=0.1),  # the defaults, with half as many pairs kept out of training
    # A second round, from the defaults' round, on its labels plus pairs of its own answers that its implicit
    # reward ranks (self_rewarded_pairs); the first round is the reference.
    "self-rewarded": dict(reference="previous"),
}
SELF_REWARDED = {"self-rewarded": 4}  # config name: answers the first round gives each labeled prompt


@dataclass
class Answers:
    """One version's answers to the judging prompts: texts, token ids (no EOS), prompt of each."""

    prompts: list[str]
    texts: list[str]
    ids: list[list[int]]


def sample_answers(server, prompts: list[str], seeds: list[int], max_new_tokens: int, version=None) -> Answers:
    found = Answers([], [], [])
    for seed in seeds:
        settings = SamplingSettings(max_new_tokens=max_new_tokens, seed=seed)
        for start in range(0, len(prompts), 8):
            batch = prompts[start : start + 8]
            ids = server.generate_tokens(batch, 1, settings, version=version)
            found.prompts += batch
            found.ids += [row[0] for row in ids]
    found.texts = [server.tokenizer.decode(ids, skip_special_tokens=True) for ids in found.ids]
    return found


def sample_candidates(server, prompts: list[str], n: int, max_new_tokens: int, repeat: int = 0) -> list[list]:
    """`n` completions of each prompt, as the app's sampler draws them. Seeded per batch of 8 prompts and by
    `repeat`, so a run can be repeated, and repeated with other samples."""
    found = []
    for start in range(0, len(prompts), 8):
        settings = SamplingSettings(max_new_tokens=max_new_tokens, seed=1000 + start + 100_000 * repeat)
        found += server.generate(prompts[start : start + 8], n, settings)
    return found


def pick_pairs(
    prompts: list[str], candidates: list[list], selection: PairSelection, repeat: int = 0, taste: Taste | None = None
) -> tuple[list, list]:
    """(prompt, a, b) for each prompt, the two picked from its candidates as the app's sampler picks them, and how
    each pair was picked. A strategy that learns from the labels (committee) is refitted every 8 prompts on the
    taste's verdicts on the pairs before (`label_pairs`), as the app's sampler refits before each batch it samples
    ahead."""
    learns = selection.strategy in LEARNS_FROM_LABELS
    if learns and taste is None:
        raise ValueError(f"the {selection.strategy!r} selection learns from labels: it needs the taste")
    sampled, how, committee = [], [], None
    rng = random.Random("bench.tastes/selection" + (f"/{repeat}" if repeat else ""))
    for k, (prompt, texts) in enumerate(zip(prompts, candidates, strict=True)):
        if learns and k % 8 == 0:
            decided, _ = label_pairs(taste, sampled, random.Random(0))  # the sides never change a taste's verdict
            committee = fit_committee([(p.chosen, p.rejected) for p in decided], rng)
        i, j, picked = choose([str(c) for c in texts], selection, rng, committee)
        sampled.append((prompt, texts[i], texts[j]))
        how.append(picked)
    return sampled, how


def label_pairs(taste: Taste, sampled: list[tuple[str, str, str]], rng: random.Random) -> tuple[list, int]:
    """(PreferencePairs, ties): each sampled (prompt, a, b) shown with random sides and judged by `taste`."""
    pairs, ties = [], 0
    for i, (prompt, a, b) in enumerate(sampled):
        left, right = (a, b) if rng.random() < 0.5 else (b, a)
        verdict = taste.judge(prompt, left, right)
        if verdict == "tie":
            ties += 1
            continue
        chosen, rejected = (left, right) if verdict == "a" else (right, left)
        pairs.append(PreferencePair(prompt, chosen, rejected, judgement_id=i + 1))
    return pairs, ties


class Scorer:
    """Per-token log-probs of answers under the base model, and under a round (its adapter on top)."""

    def __init__(self, model: str, tokenizer) -> None:
        self.base = load_model(model, "none", "cpu")
        self.base.eval()
        self.tokenizer = tokenizer

    def contexts(self, answers: Answers) -> list[list[int]]:
        return [prompt_ids(self.tokenizer, p, keep_last=1024) for p in answers.prompts]

    def base_logps(self, answers: Answers) -> list[list[float]]:
        return token_logps(self.base, self.contexts(answers), answers.ids, "cpu", contextlib.nullcontext)

    def round_logps(self, answers: Answers, adapter: Path) -> list[list[float]]:
        from peft import PeftModel

        policy = PeftModel.from_pretrained(self.base, str(adapter))
        try:
            return token_logps(policy, self.contexts(answers), answers.ids, "cpu", contextlib.nullcontext)
        finally:
            self.base = policy.unload()


def fluency(answers: Answers, base_logps: list[list[float]]) -> dict:
    lengths = [len(ids) for ids in answers.ids]
    return {
        "nll": mean_nll(base_logps),
        "foreign_script": foreign_script_share(answers.prompts, answers.texts),
        "distinct_2": distinct_n(answers.ids, 2),
        "repeated_4gram": repeated_ngram_rate(answers.ids, 4).share_with_repeats,
        "mean_length": statistics.mean(lengths),
    }


def taste_win_rate(taste: Taste, round_answers: Answers, base_answers: Answers) -> dict:
    verdicts = [
        taste.judge(p, r, b)
        for p, r, b in zip(base_answers.prompts, round_answers.texts, base_answers.texts, strict=True)
    ]
    rate = win_rate(verdicts.count("a"), verdicts.count("b"), verdicts.count("tie"))
    return {"win_rate": rate.rate, "win_low": rate.low, "win_high": rate.high, "judged": rate.n}


def self_rewarded_pairs(ctx: dict, name: str, adapter: Path, prompts: list[str], n: int, max_new_tokens: int) -> list:
    """Pairs of a round's own answers ranked by its implicit reward (DICE, Chen et al. 2024): `n` answers to each
    prompt, scored by log π_round/π_base summed over the answer less the round's mean log-ratio per token times its
    length (so that length alone, which the sum rewards, does not rank); the best and the worst of each prompt."""
    server, scorer = ctx["server"], ctx["scorer"]
    answers = Answers([], [], [])
    for start in range(0, len(prompts), 8):
        batch = prompts[start : start + 8]
        settings = SamplingSettings(max_new_tokens=max_new_tokens, seed=3000 + start)
        for prompt, rows in zip(batch, server.generate_tokens(batch, n, settings, version=name), strict=True):
            answers.prompts += [prompt] * len(rows)
            answers.ids += rows
    answers.texts = [server.tokenizer.decode(ids, skip_special_tokens=True) for ids in answers.ids]
    under_base, under_round = scorer.base_logps(answers), scorer.round_logps(answers, adapter)
    ratios = [sum(r) - sum(b) for r, b in zip(under_round, under_base, strict=True)]
    per_token = sum(ratios) / max(sum(len(ids) for ids in answers.ids), 1)
    rewards = [r - per_token * len(ids) for r, ids in zip(ratios, answers.ids, strict=True)]
    pairs = []
    for first in range(0, len(rewards), n):
        group = range(first, first + n)
        best, worst = max(group, key=rewards.__getitem__), min(group, key=rewards.__getitem__)
        if answers.texts[best].strip() and answers.texts[best] != answers.texts[worst]:
            pairs.append(PreferencePair(answers.prompts[first], answers.texts[best], answers.texts[worst]))
    return pairs


def train_one(args, ctx: dict, taste_name: str, n_labels: int, config_name: str, pairs: list):
    """(config, result, version name) of one round on `pairs`; a self-rewarded config first trains (or reuses)
    the defaults' round, then a second round from it on `pairs` plus its own ranked pairs."""
    seed = args.seed + ctx["repeat"]
    values = {"seed": seed, "compute_dtype": args.compute_dtype, "diagnostic_prompts": 0} | CONFIGS[config_name]
    config, name, parent = DPOConfig(**values), f"{taste_name}-{n_labels}-{config_name}{ctx['suffix']}", None
    if config_name in SELF_REWARDED:
        first = ctx["rounds"].get((taste_name, n_labels, "default", ctx["suffix"]))
        if first is None:
            first = train_one(args, ctx, taste_name, n_labels, "default", pairs)
        ctx["server"].load(first[2], str(first[1].adapter_dir))
        prompts = [prompt for prompt, _, _ in ctx["sampled"][:n_labels]]
        own = self_rewarded_pairs(
            ctx, first[2], first[1].adapter_dir, prompts, SELF_REWARDED[config_name], args.max_new_tokens
        )
        verdicts = [TASTES[taste_name].judge(p.prompt, p.chosen, p.rejected) for p in own]
        print(f"{name}: {len(own)} own pairs; the taste agrees with {verdicts.count('a')}, disagrees with "
              f"{verdicts.count('b')}, ties {verdicts.count('tie')}", flush=True)  # fmt: skip
        pairs, parent = pairs + own, str(first[1].adapter_dir)
    result = run_round(config, pairs, Path(ctx["tmp"]) / name, model=ctx["model"], device="cpu", parent_adapter=parent)
    ctx["rounds"][(taste_name, n_labels, config_name, ctx["suffix"])] = (config, result, name)
    return config, result, name


def run_one(args, ctx: dict, taste_name: str, n_labels: int, config_name: str) -> dict:
    """One round: label, train, answer, judge; returns its JSON row."""
    taste = TASTES[taste_name]
    pairs, ties = label_pairs(taste, ctx["sampled"][:n_labels], random.Random(args.seed + ctx["repeat"]))
    started = time.monotonic()
    config, result, name = train_one(args, ctx, taste_name, n_labels, config_name, pairs)
    train_s = time.monotonic() - started
    server = ctx["server"]
    server.load(name, str(result.adapter_dir))
    answers = sample_answers(server, ctx["eval_prompts"], ctx["seeds"], args.max_new_tokens, version=name)
    base = ctx["base"]
    under_base = ctx["scorer"].base_logps(answers)
    under_round = ctx["scorer"].round_logps(answers, result.adapter_dir)
    numbers = fluency(answers, under_base) | {"kl": kl_per_token(under_round, under_base)}
    invented = lifted(answers.ids, under_round, under_base, server.tokenizer, shown=8)
    heldout = result.metrics.get("heldout_after") or {}
    reasons = health_check(
        {"nll": numbers["nll"], "foreign_script": numbers["foreign_script"], "kl_per_token": numbers["kl"]} | invented,
        {"nll": base["nll"], "foreign_script": base["foreign_script"]},
        heldout,
        config,
    )
    row = {
        "labels": n_labels,
        "pairs": len(pairs),
        "ties": ties,
        **taste_win_rate(taste, answers, ctx["base_answers"]),
        "nll_base": base["nll"],
        "nll_round": numbers["nll"],
        "foreign_script_base": base["foreign_script"],
        "foreign_script": numbers["foreign_script"],
        "length_ratio": numbers["mean_length"] / base["mean_length"],
        "distinct_2": numbers["distinct_2"],
        "repeated_4gram": numbers["repeated_4gram"],
        "repeated_4gram_base": base["repeated_4gram"],
        "kl": numbers["kl"],
        **invented,
        "heldout_accuracy": heldout.get("accuracy"),
        "heldout_margin": heldout.get("margin"),
        "chosen_reward": heldout.get("chosen_reward"),
        "rejected_reward": heldout.get("rejected_reward"),
        "served": not reasons,
        "gate_reasons": reasons,
        "train_s": round(train_s, 1),
        "steps": result.metrics["stopped"]["step"],
        "samples": [{"prompt": p, "round": r, "base": b} for p, r, b in
                    zip(answers.prompts[:3], answers.texts[:3], ctx["base_answers"].texts[:3], strict=True)],
    }  # fmt: skip
    ctx["server"].serve("base")
    return row


def _round(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def print_table(results: dict) -> None:
    print(
        f"{'config':12s} {'taste':24s} {'labels':>6s} {'win':>5s} {'95% CI':>12s} {'nll b/r':>11s} "
        f"{'foreign':>7s} {'len':>5s} {'KL':>6s} {'acc':>5s} served"
    )
    for config, tastes in results.items():
        for key, r in tastes.items():
            print(
                f"{config:12s} {key:24s} {r['labels']:6d} {r['win_rate']:5.2f} "
                f"[{r['win_low']:.2f}, {r['win_high']:.2f}] {r['nll_base']:5.2f}/{r['nll_round']:5.2f} "
                f"{r['foreign_script']:7.3f} {r['length_ratio']:5.2f} {r['kl']:6.3f} "
                f"{(r['heldout_accuracy'] or 0):5.2f} "
                f"{'yes' if r['served'] else 'no: ' + '; '.join(r['gate_reasons'])[:60]}"
            )


def print_savings(compared: dict, match: int) -> None:
    """Labels each strategy needs to reach random's win rate at `match`, per taste: median [lowest, highest]."""

    def shown(v):
        return "more" if v is None else f"{v:.0f}"

    print(f"labels to reach random's win rate at {match} labels: median [lowest, highest] over the repeats")
    for strategy, result in compared.items():
        cells = [f"{taste} {shown(t['median'])} [{shown(t['low'])}, {shown(t['high'])}]"
                 for taste, t in result["tastes"].items()]  # fmt: skip
        saving = "" if result["saving"] is None else f", saving {result['saving']:.0%}"
        print(f"{strategy:8s} {'; '.join(cells)}; mean {shown(result[f'labels_to_match_random_{match}'])}{saving}")


def run_settings(args, model_key: dict, backend: str, selection: PairSelection, config_name: str) -> dict:
    """What a run's figures depend on besides its taste, labels, strategy and repeat: a result kept in
    `--results` is reused only where these are the same (the same model, CPU and engines give the same figures)."""
    return {
        "model": model_key,
        "backend": backend,
        "compute_dtype": args.compute_dtype,
        "eval_prompts": args.eval_prompts,
        "seeds": args.seeds,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "candidates": selection.candidates,
        "control_share": selection.control_share if selection.strategy != "random" else None,
        "config": DPOConfig(**CONFIGS[config_name]).to_dict(),
    }


def run_key(run: dict) -> tuple:
    return run["config"], run["taste"], run["strategy"], run["repeat"], run["labels"]


def load_results(path: Path) -> list[dict]:
    """The runs kept in a `--results` file (JSON lines; none if it does not exist yet)."""
    if not path.exists():
        return []
    runs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
            run_key(run), run["settings"], run["win_rate"]  # noqa: B018 - what every kept run has
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(
                f"{path}:{number} is not a bench.tastes result ({type(error).__name__}: {error}); "
                "remove that line, or pass another --results file"
            ) from None
        runs.append(run)
    return runs


def reusable(kept: list[dict], settings: dict[tuple[str, str], dict]) -> dict[tuple, dict]:
    """The kept runs this invocation would make itself, by `run_key`: those whose settings equal the ones it runs
    their (strategy, config) with. A later line for the same run wins."""
    return {run_key(r): r for r in kept if settings.get((r["strategy"], r["config"])) == r["settings"]}


def main(args: argparse.Namespace) -> dict:
    started = time.monotonic()
    if args.quick:
        args.eval_prompts, args.seeds = min(args.eval_prompts, 16), 1
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be at least 1, got {args.repeats}")
    comparing = len(set(args.selection)) > 1 or args.repeats > 1
    if args.configs is None:
        args.configs = ["default"] if comparing else ["default", "old"]
    if args.candidates is None:
        args.candidates = 2 if set(args.selection) == {"random"} else 4
    random_labels = args.random_labels or args.labels
    if len(set(args.selection)) > 1 and ("random" not in args.selection or args.match_labels not in random_labels):
        raise SystemExit(f"comparing strategies needs random among --selection and {args.match_labels} among "
                         f"--labels (or --random-labels): random's win rate there is the target, e.g. --selection "
                         f"random spread --labels 20 {args.match_labels} 80")  # fmt: skip
    results_file = Path(args.results) if args.results else None
    kept = load_results(results_file) if results_file else []
    model = args.model or str(prepare_default_model(Path(args.model_cache)))
    server = open_policy_server(model, "cpu", backend=args.backend, cache_dir=args.model_cache)
    backend, model_key = getattr(server, "backend", type(server).__name__), choice_key(model)
    prompts = random.Random(0).sample(starter_prompts(), len(starter_prompts()))
    eval_prompts, pool = prompts[: args.eval_prompts], prompts[args.eval_prompts :]
    counts = sorted(set(args.labels) | set(random_labels))
    if max(counts) > len(pool):
        raise SystemExit(f"--labels at most {len(pool)} with --eval-prompts {args.eval_prompts} (the starter prompts)")
    strategies, repeats = list(dict.fromkeys(args.selection)), range(args.repeats)
    selections = {s: PairSelection(2 if s == "random" and len(strategies) > 1 else args.candidates, s,
                                   args.control_share) for s in strategies}  # fmt: skip
    settings = {(s, c): run_settings(args, model_key, backend, selections[s], c) for s in strategies
                for c in args.configs}  # fmt: skip
    done = reusable(kept, settings)
    seeds = list(range(1, args.seeds + 1))
    results, runs, shown_as, sampled_pairs, candidates = {}, [], {}, {}, {}
    keep = contextlib.nullcontext(args.keep_rounds) if args.keep_rounds else None
    with keep or tempfile.TemporaryDirectory(prefix="prefloop-tastes-") as tmp:
        ctx = {"model": model, "server": server, "eval_prompts": eval_prompts, "seeds": seeds, "tmp": tmp, "rounds": {}}

        def judge_against_base() -> None:  # the base's answers, sampled once, when a run first needs them
            if "base" not in ctx:
                base_answers = sample_answers(server, eval_prompts, seeds, args.max_new_tokens)
                scorer = Scorer(model, server.tokenizer)
                ctx.update(base_answers=base_answers, scorer=scorer,
                           base=fluency(base_answers, scorer.base_logps(base_answers)))  # fmt: skip
                print(f"sampled the base's {len(base_answers.ids)} answers in {time.monotonic() - started:.0f} s",
                      flush=True)  # fmt: skip

        def pairs_of(repeat: int, strategy: str, taste: str) -> tuple[list, list]:
            """The pairs a strategy shows: once per repeat, or per taste too where it learns from the labels. The
            candidates are sampled once per repeat and number of candidates, shared by the strategies."""
            selection = selections[strategy]
            key = (repeat, strategy) + ((taste,) if strategy in LEARNS_FROM_LABELS else ())
            if key not in sampled_pairs:
                sampling = time.monotonic()
                prompts = pool if repeat == 0 else random.Random(repeat).sample(pool, len(pool))
                prompts = prompts[: max(counts)]
                if (repeat, selection.candidates) not in candidates:
                    candidates[repeat, selection.candidates] = sample_candidates(
                        server, prompts, selection.candidates, args.max_new_tokens, repeat
                    )
                sampled_pairs[key] = pick_pairs(
                    prompts, candidates[repeat, selection.candidates], selection, repeat, TASTES[taste]
                )
                for picked in sampled_pairs[key][1]:
                    shown_as.setdefault(strategy, {}).setdefault(picked, 0)
                    shown_as[strategy][picked] += 1
                print(f"picked {max(counts)} pairs ({strategy}, repeat {repeat}"
                      f"{', ' + taste if len(key) > 2 else ''}) in {time.monotonic() - sampling:.0f} s",
                      flush=True)  # fmt: skip
            return sampled_pairs[key]

        # Taste by taste within a repeat, every strategy's runs together: a comparison stopped part way has
        # whole tastes, and --results goes on from there.
        for repeat in repeats:  # each repeat labels other prompts, other samples, other sides, with another seed
            for taste in args.tastes:
                for strategy in strategies:
                    suffix = (f"-{strategy}" if len(strategies) > 1 else "") + (
                        f"-r{repeat}" if args.repeats > 1 else ""
                    )
                    for config in args.configs:  # in the order given: the defaults first
                        if config == "old" and taste not in (args.old_tastes or args.tastes):
                            continue
                        for n_labels in random_labels if strategy == "random" else args.labels:
                            where = {"config": config, "taste": taste, "strategy": strategy, "repeat": repeat}
                            run = done.get(run_key(where | {"labels": n_labels}))
                            if run is None:
                                sampled, how = pairs_of(repeat, strategy, taste)
                                judge_against_base()
                                ctx |= {"sampled": sampled, "repeat": repeat, "suffix": suffix}
                                row = run_one(args, ctx, taste, n_labels, config)
                                shown = how[:n_labels]
                                row["shown_as"] = {h: shown.count(h) for h in dict.fromkeys(shown)}
                                run = where | _round(row) | {"settings": settings[strategy, config]}
                                if results_file:
                                    with results_file.open("a") as out:
                                        out.write(json.dumps(run, ensure_ascii=False) + "\n")
                                print(json.dumps({k: v for k, v in run.items() if k != "settings"},
                                                 ensure_ascii=False), flush=True)  # fmt: skip
                            else:
                                print(f"kept in {results_file}: {taste}, {n_labels} labels, {strategy}, "
                                      f"repeat {repeat}, {config}", flush=True)  # fmt: skip
                            row = {k: v for k, v in run.items() if k not in (*where, "settings")}
                            at = "" if len(counts) == 1 else f"@{n_labels}"
                            results.setdefault(config, {})[taste + at + suffix.replace("-", "/", 1)] = row
                            runs.append(where | row)
    print_table(results)
    summary = {
        "cpu": cpu_flags(),
        "backend": backend,
        "config": {name: DPOConfig(**CONFIGS[name]).to_dict() for name in args.configs},
        "chosen_on": list(CHOSEN_ON),
        "selection": {"candidates": {s: sel.candidates for s, sel in selections.items()}, "strategies": strategies,
                      "control_share": args.control_share, "repeats": args.repeats, "shown_as": shown_as},
        "eval_prompts": len(eval_prompts),
        "seeds": len(seeds),
        "max_new_tokens": args.max_new_tokens,
        "kept": sum(run_key(r) in done for r in runs),
        "seconds": round(time.monotonic() - started),
        "results": {c: {t: {k: v for k, v in r.items() if k not in ("samples", "lifted")} for t, r in rows.items()}
                    for c, rows in _round(results).items()},
    }  # fmt: skip
    summary["tastes"] = summary["results"].get("default", next(iter(summary["results"].values())))
    if len(strategies) > 1:
        config = "default" if "default" in args.configs else args.configs[0]
        compared = compare_strategies([r for r in runs if r["config"] == config], args.match_labels)
        summary["strategies"] = _round(compared)
        print_savings(compared, args.match_labels)
    print(json.dumps(summary, ensure_ascii=False))
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.tastes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tastes", nargs="+", default=list(TASTES), choices=list(TASTES))
    parser.add_argument("--labels", nargs="+", type=int, default=[40], help="labels per taste (ties included)")
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        help="default: default and old; default alone with --repeats or several --selection",
    )
    parser.add_argument(
        "--old-tastes",
        nargs="+",
        default=None,
        choices=list(TASTES),
        help="the tastes the old defaults run on (default: --tastes)",
    )
    parser.add_argument(
        "--candidates", type=int, help="completions sampled per labeled prompt (default: 2 for random alone, else 4)"
    )
    parser.add_argument(
        "--selection",
        nargs="+",
        default=["random"],
        choices=list(STRATEGIES),
        help="which two are labeled; several: each strategy labels its own pairs (random two of two, as the app "
        "by default) and the JSON has labels_to_match_random_<match> per strategy",
    )
    parser.add_argument("--repeats", type=int, default=1, help="each run again on other prompts, samples and seed")
    parser.add_argument(
        "--match-labels", type=int, default=40, help="with several --selection: the labels random is matched at"
    )
    parser.add_argument(
        "--random-labels",
        nargs="+",
        type=int,
        help="with several --selection: the labels random trains at (default: --labels); --random-labels 40 "
        "trains only the rounds the target needs",
    )
    parser.add_argument("--control-share", type=float, default=0.2, help="of them, picked at random anyway")
    parser.add_argument("--eval-prompts", type=int, default=32, help="judging prompts, never labeled")
    parser.add_argument("--seeds", type=int, default=2, help="answers per judging prompt and version")
    parser.add_argument("--quick", action="store_true", help="16 judging prompts, one seed")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="as the app samples")
    parser.add_argument("--seed", type=int, default=0, help="the rounds' seed and the labelers' side flips")
    parser.add_argument("--backend", default="auto", help="the serving backend that samples (the app's default)")
    parser.add_argument("--compute-dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--model", help="a local model folder or hub id (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--model-cache", default=DEFAULT_MODEL_CACHE)
    parser.add_argument("--keep-rounds", metavar="DIR", help="train the rounds into DIR and keep them (default: gone)")
    parser.add_argument(
        "--results",
        metavar="FILE",
        help="append each finished run to FILE (JSON lines) and skip the runs it already has with the same settings, "
        "model, CPU and engines: a long comparison can stop and go on",
    )
    return parser


if __name__ == "__main__":
    main(build_parser().parse_args())
