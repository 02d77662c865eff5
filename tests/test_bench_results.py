"""bench.tastes' own parts: the runs kept in a --results file, reused only where they were run the same way; the
comparison's arguments; pairs picked by a strategy that learns from the taste's labels."""

import json

import pytest

from bench.tastes import load_results, reusable


def kept_run(strategy="random", config="default", labels=40, repeat=0, win_rate=0.6, settings=None) -> dict:
    return {"config": config, "taste": "plain", "strategy": strategy, "repeat": repeat, "labels": labels,
            "win_rate": win_rate, "settings": settings or {"seed": 0, "candidates": 2}}  # fmt: skip


def test_a_results_file_that_does_not_exist_yet_keeps_nothing(tmp_path):
    assert load_results(tmp_path / "runs.jsonl") == []


def test_kept_runs_are_read_back_line_by_line_blank_lines_skipped(tmp_path):
    path = tmp_path / "runs.jsonl"
    runs = [kept_run(labels=20), kept_run(labels=40)]
    path.write_text(json.dumps(runs[0]) + "\n\n" + json.dumps(runs[1]) + "\n")
    assert load_results(path) == runs


@pytest.mark.parametrize(
    "line", ["{not json", json.dumps({"config": "default", "taste": "plain"}), json.dumps([1, 2]), "42"]
)
def test_a_line_that_is_not_a_run_names_the_file_and_line_and_what_to_do(tmp_path, line):
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(kept_run()) + "\n" + line + "\n")
    with pytest.raises(SystemExit, match=r"runs\.jsonl:2 is not a bench\.tastes result .*remove that line"):
        load_results(path)


def test_only_runs_made_with_the_same_settings_are_reused_and_a_later_line_wins():
    same, other = {"seed": 0, "candidates": 4}, {"seed": 1, "candidates": 4}
    kept = [
        kept_run("spread", settings=same, win_rate=0.5),
        kept_run("spread", settings=same, win_rate=0.7),  # the same run again, later: this one counts
        kept_run("spread", labels=20, settings=other),  # another seed: run again
        kept_run("random", settings=same),  # random ran with other settings than it runs with now
        kept_run("spread", config="old", settings=same),  # a config this invocation does not run
    ]
    found = reusable(kept, {("spread", "default"): same, ("random", "default"): {"seed": 0, "candidates": 2}})
    assert list(found) == [("default", "plain", "spread", 0, 40)]
    assert found["default", "plain", "spread", 0, 40]["win_rate"] == 0.7


@pytest.mark.parametrize(
    "argv",
    [
        "--selection random spread --labels 20 40 --random-labels 20",  # random never trains at the 40 it is matched at
        "--selection random spread --labels 20 80",
    ],
)
def test_a_comparison_without_random_s_target_stops_before_loading_anything_and_says_what_to_add(argv):
    from bench.tastes import build_parser, main

    with pytest.raises(SystemExit, match=r"needs random among --selection and 40 among --labels \(or --random-"):
        main(build_parser().parse_args(argv.split()))


def test_a_learning_strategy_picks_each_taste_its_own_pairs_refitted_every_eight_prompts():
    from bench.tastes import TASTES, pick_pairs
    from labeling.selection import PairSelection

    prompts = [f"Say something about {i}." for i in range(24)]
    answers = ["Short.", "A brief answer.", "A much longer answer with many more words in it, and then some.",
               "A middling answer of eight words here."]  # fmt: skip
    candidates = [answers] * 24  # no "you" and no contraction: the casual taste ties on every pair
    committee = PairSelection(candidates=4, strategy="committee", control_share=0.0)
    shorter, how = pick_pairs(prompts, candidates, committee, taste=TASTES["shorter"])
    undecided, _ = pick_pairs(prompts, candidates, committee, taste=TASTES["casual"])
    assert how == ["committee"] * 24
    assert shorter[:8] == undecided[:8], "the first batch: nothing learnt yet, the same random picks"
    assert shorter[8:] != undecided[8:], "refitted on the shorter taste's verdicts, it picks other pairs"
    assert len({(a, b) for _, a, b in undecided}) > 3, "with no decided label it keeps picking at random"
    with pytest.raises(ValueError, match="needs the taste"):
        pick_pairs(prompts, candidates, committee)
