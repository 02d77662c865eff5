"""The benchmarks run end to end on a small CPU setting and end with the JSON line their readers parse.

They check that the figures are there and consistent, never how large they are: speed is for the benchmarks
themselves to report, on a quiet machine.
"""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # launches the app, a round's process or a benchmark

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


def test_each_simulated_labeler_picks_by_its_taste_and_ties_when_it_cannot_tell():
    from bench.tastes import TASTES

    prompt = "Why do cats purr when they are happy?"
    cases = {  # taste: (the answer it prefers, the other)
        "shorter": ("Cats purr to show they feel safe.", "Cats purr for many reasons, and scientists still argue about "
                    "which of them matters most in a given moment."),
        "longer": ("Cats purr for many reasons, and scientists still argue about which of them matters most.",
                   "They feel safe."),
        "structured": ("Cats purr when:\n\n- they feel safe\n- they are fed", "Cats purr when they feel safe and fed."),
        "casual": ("You'll hear it when your cat's relaxed.", "The animal produces the sound during relaxation."),
        "plain": ("They do it when they feel good and safe.", "Felines vocalize contentment through laryngeal "
                  "oscillation."),
        "on_topic": ("Cats purr when happy because purring calms them.", "The ocean is vast and deep."),
    }  # fmt: skip
    assert set(cases) == set(TASTES)
    for name, (better, worse) in cases.items():
        taste = TASTES[name]
        assert taste.judge(prompt, better, worse) == "a", name
        assert taste.judge(prompt, worse, better) == "b", name
        assert taste.judge(prompt, better, better) == "tie", name
    assert TASTES["shorter"].judge(prompt, "one two three four five six seven eight nine ten", "one " * 11) == "tie"
    assert len({t.kind for t in TASTES.values()}) == 4, "length, format, tone and content"


def test_simulated_labels_show_random_sides_drop_ties_and_keep_the_taste_s_pick():
    import random

    from bench.tastes import TASTES, label_pairs

    sampled = [("Say hi.", "Hi.", "Hello there, how are you doing today?")] * 20 + [("Say hi.", "Hi.", "Yo.")] * 5
    pairs, ties = label_pairs(TASTES["shorter"], sampled, random.Random(0))
    assert ties == 5 and len(pairs) == 20
    assert {(p.chosen, p.rejected) for p in pairs} == {("Hi.", "Hello there, how are you doing today?")}
    assert [p.judgement_id for p in pairs] == list(range(1, 21))


def test_fluency_and_the_gate_see_gibberish_that_distinct_2_would_reward():
    from bench.tastes import Answers, fluency
    from training.config import DPOConfig
    from training.gate import health_check

    prompts = ["Suggest a name for a friendly robot vacuum."] * 2
    texts = ["How about Dusty? It sounds friendly.", "Maybe Sweepy, a cheerful name."]
    base = Answers(prompts, texts, [[1, 2, 3, 4]] * 2)
    gibberish = Answers(prompts, ["Васлушарь и длясмусоти", "Aubergus. Camelitus."], [[5, 6, 7, 8], [9, 10, 11, 12]])
    ours = fluency(base, [[-1.2] * 5, [-1.3] * 5])
    theirs = fluency(gibberish, [[-4.0] * 5, [-4.3] * 5])
    assert theirs["distinct_2"] > ours["distinct_2"], "diversity rises as text turns into short gibberish"
    assert theirs["nll"] == pytest.approx(4.15) and ours["nll"] == pytest.approx(1.25)
    assert theirs["foreign_script"] > 0.5 and ours["foreign_script"] == 0.0
    reasons = health_check(theirs | {"kl_per_token": 1.52}, ours, {"accuracy": 0.62, "n": 8}, DPOConfig())
    assert [r.split(":")[0] for r in reasons] == ["fluency", "script", "KL"]


def test_the_taste_bench_labels_the_pair_the_app_s_selection_would_show(tiny_model_dir):
    from bench.tastes import pick_pairs, sample_candidates
    from labeling.selection import PairSelection, pick_spread
    from serving import SamplingSettings, TorchPolicyServer

    server = TorchPolicyServer(str(tiny_model_dir), device="cpu")
    prompts = [f"Tell me about topic {i}." for i in range(3)]

    def sample_pairs(selection: PairSelection) -> tuple[list, list]:
        return pick_pairs(prompts, sample_candidates(server, prompts, selection.candidates, 8), selection)

    sampled, how = sample_pairs(PairSelection(4, "spread", control_share=0.0))
    assert how == ["spread"] * 3 and [p for p, _, _ in sampled] == prompts
    settings = SamplingSettings(max_new_tokens=8, seed=1000)  # the bench's seed for its first batch of 8
    for (_, a, b), candidates in zip(sampled, server.generate(prompts, 4, settings), strict=True):
        i, j = pick_spread([str(c) for c in candidates], None)
        assert (str(a), str(b)) == (str(candidates[i]), str(candidates[j]))
    plain, how = sample_pairs(PairSelection())
    assert how == ["random"] * 3
    assert [(str(a), str(b)) for _, a, b in plain] == [
        (str(x), str(y)) for x, y in server.generate(prompts, 2, settings)
    ], "two candidates at random: both, as sampled, as before"


@pytest.mark.slow
def test_the_taste_bench_compares_strategies_by_the_labels_they_need_to_match_random(tiny_model_dir, tmp_path):
    from bench.tastes import build_parser, main

    results, first, second = tmp_path / "runs.jsonl", tmp_path / "first", tmp_path / "second"

    def bench(repeats: int, rounds: Path, *more: str) -> dict:
        return main(build_parser().parse_args(
            ["--model", str(tiny_model_dir), "--backend", "eager", "--tastes", "plain", "--selection", "random",
             "spread", "--labels", "8", "16", "--match-labels", "16", "--repeats", str(repeats), "--eval-prompts", "2",
             "--seeds", "1", "--max-new-tokens", "8", "--keep-rounds", str(rounds), "--results", str(results), *more]
        ))  # fmt: skip

    stopped = bench(1, first)  # a comparison that stopped after its first repeat...
    assert stopped["kept"] == 0 and len(results.read_text().splitlines()) == 4
    summary = bench(2, second)  # ...goes on: repeat 0 is read back, repeat 1 runs
    assert summary["kept"] == 4 and len(results.read_text().splitlines()) == 8
    assert len(list(second.iterdir())) == 4, "only the runs the file did not have were trained, each its own adapter"
    assert summary["selection"]["candidates"] == {"random": 2, "spread": 4}, "random as the app shows it: two of two"
    assert summary["selection"]["shown_as"]["random"] == {"random": 16}, "pairs sampled by this invocation"
    assert sum(summary["selection"]["shown_as"]["spread"].values()) == 16
    assert set(summary["selection"]["shown_as"]["spread"]) <= {"spread", "control"}
    assert list(summary["config"]) == ["default"], "comparing runs the defaults alone"
    rows = summary["results"]["default"]
    assert set(rows) == {f"plain@{n}/{s}-r{r}" for n in (8, 16) for s in ("random", "spread") for r in (0, 1)}
    for s in ("random", "spread"):
        assert rows[f"plain@16/{s}-r0"] == stopped["results"]["default"][f"plain@16/{s}"], "read back as it was"
        assert sum(rows[f"plain@16/{s}-r1"]["shown_as"].values()) == 16, "each run says how its pairs were shown"
    strategies = summary["strategies"]
    assert set(strategies) == {"random", "spread"}
    for name, result in strategies.items():
        taste = result["tastes"]["plain"]
        assert len(taste["per_repeat"]) == 2 and "labels_to_match_random_16" in result, name
        target = statistics.mean(rows[f"plain@16/random-r{r}"]["win_rate"] for r in (0, 1))
        assert taste["target"] == pytest.approx(target, abs=1e-4)
    again = bench(2, tmp_path / "third")  # everything kept: nothing sampled or trained, the same comparison
    assert again["kept"] == 8 and again["strategies"] == strategies and again["results"] == summary["results"]
    assert not (tmp_path / "third").exists() or not list((tmp_path / "third").iterdir())
    target_only = bench(2, tmp_path / "fourth", "--random-labels", "16")  # random only where the target is
    assert target_only["kept"] == 6 and set(target_only["results"]["default"]) == set(rows) - {
        f"plain@8/random-r{r}" for r in (0, 1)
    }
    assert target_only["strategies"]["spread"] == strategies["spread"], "the same target, the same figures"
    learning = bench(2, tmp_path / "fifth", "--random-labels", "16", "--selection", "random", "committee")
    assert learning["kept"] == 2 and len(list((tmp_path / "fifth").iterdir())) == 4, "random read back, committee runs"
    assert set(learning["selection"]["shown_as"]["committee"]) <= {"committee", "control"}
    assert set(learning["strategies"]) == {"random", "committee"}
