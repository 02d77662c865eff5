"""Round diagnostics on texts and log-probs with known answers, and the warnings each failure raises."""

import math

import numpy as np
import pytest

from evaluation.diagnostics import (
    RoundDiagnostics,
    distinct_n,
    foreign_script_share,
    kl_per_token,
    lifted_tokens,
    mean_length,
    mean_nll,
    repeated_ngram_rate,
    warnings,
)


def test_distinct_n_pools_ngrams_over_all_texts():
    # bigrams: ab ba ab | ab bc -> 3 distinct of 5
    assert distinct_n(["a b a b", "a b c"]) == pytest.approx(3 / 5)
    assert distinct_n([[1, 2, 1, 2], [1, 2, 3]]) == pytest.approx(3 / 5)
    assert distinct_n(["a b a b"], n=1) == pytest.approx(2 / 4)
    assert math.isnan(distinct_n(["one"])) and math.isnan(distinct_n([]))


def test_repeated_ngram_rate_finds_looping_samples():
    # "a b c d a b c d": 5 four-grams, "a b c d" twice -> 1/5 repeated; the others repeat nothing.
    rep = repeated_ngram_rate(["a b c d a b c d", "a b c d e", "short"])
    assert rep.share_with_repeats == pytest.approx(1 / 3)
    assert rep.mean_repeated == pytest.approx(0.2 / 3)
    assert repeated_ngram_rate([[7] * 6]).mean_repeated == pytest.approx(2 / 3)  # 3 four-grams, all the same
    assert math.isnan(repeated_ngram_rate([]).share_with_repeats)


def test_mean_length_counts_whitespace_tokens_or_ids():
    assert mean_length(["a b c", [1, 2, 3, 4, 5]]) == 4.0
    assert math.isnan(mean_length([]))


def test_kl_per_token_is_the_pooled_mean_log_ratio():
    policy, ref = [[-1.0, -1.0, -1.0], [0.0]], [[-2.0, -2.0, -2.0], [0.0]]
    assert kl_per_token(policy, ref) == pytest.approx(3 / 4)  # pooled over 4 tokens, not (1 + 0) / 2
    with pytest.raises(ValueError, match="score the same tokens"):
        kl_per_token([[-1.0, -2.0]], [[-1.0]])
    with pytest.raises(ValueError, match="pass one each"):
        kl_per_token([[-1.0]], [])
    with pytest.raises(ValueError, match="sample at least one"):
        kl_per_token([[]], [[]])


def test_lifted_tokens_points_at_what_the_policy_made_likely_and_the_reference_did_not():
    # Sequence 0, token 1: unlikely under the reference (-8), likely under the policy (-1): lifted by 7 nats.
    # Token 2: lifted by 4.5 where the reference finds it likely enough (-5): an ordinary shift. Token 3: unlikely
    # under both (a rare word the base would write too). Token 0: nothing moved. Sequence 1: lifted by 4.5 from -6.5.
    policy = [[-0.5, -1.0, -0.5, -9.0], [-2.0]]
    ref = [[-0.5, -8.0, -5.0, -9.5], [-6.5]]
    assert lifted_tokens(policy, ref) == [[1], [0]]
    assert lifted_tokens(policy, ref, lift=5.0) == [[1], []]
    assert lifted_tokens(policy, ref, ref_below=-4.0) == [[1, 2], [0]]
    with pytest.raises(ValueError, match="score the same tokens"):
        lifted_tokens([[-1.0, -2.0]], [[-1.0]])
    with pytest.raises(ValueError, match="pass one each"):
        lifted_tokens([[-1.0]], [])


def test_kl_per_token_estimates_the_true_kl_from_samples():
    p, q = np.array([0.7, 0.2, 0.1]), np.array([0.4, 0.4, 0.2])
    tokens = np.random.default_rng(0).choice(3, size=(2000, 10), p=p)
    estimate = kl_per_token(np.log(p)[tokens].tolist(), np.log(q)[tokens].tolist())
    assert estimate == pytest.approx(float(np.sum(p * np.log(p / q))), abs=0.01)  # KL(p||q) = 0.184 nats


def test_diagnostics_reject_shares_outside_0_1():
    with pytest.raises(ValueError, match="distinct_2 is a share"):
        RoundDiagnostics("round_001", distinct_2=1.5)


def test_a_healthy_history_raises_no_warnings():
    base = RoundDiagnostics("base", kl_per_token=0.0, mean_length=100, distinct_2=0.8, repeated_4gram=0.02)
    good = RoundDiagnostics("round_001", 0.03, 110, 0.78, 0.03, heldout_accuracy=0.7, train_accuracy=0.75)
    good_rewards = RoundDiagnostics("round_002", chosen_reward=0.2, rejected_reward=-0.4)
    assert warnings([base, good]) == [] and warnings([good_rewards]) == []
    assert warnings([base]) == [] and warnings([]) == []
    assert warnings([RoundDiagnostics("base"), RoundDiagnostics("round_001")]) == []


def test_both_rewards_falling_is_flagged():
    (text,) = warnings([RoundDiagnostics("round_002", chosen_reward=-0.3, rejected_reward=-1.2)])
    assert text.startswith("round_002: both the chosen (-0.30) and the rejected (-1.20) rewards fell")
    assert "fewer epochs" in text


@pytest.mark.parametrize("heldout, expected", [(0.61, 1), (0.70, 0)])
def test_flat_heldout_accuracy_with_climbing_training_accuracy_is_overfitting(heldout, expected):
    prev = RoundDiagnostics("round_001", heldout_accuracy=0.60, train_accuracy=0.7)
    last = RoundDiagnostics("round_002", heldout_accuracy=heldout, train_accuracy=0.9)
    found = warnings([prev, last])
    assert len(found) == expected and all("memorized" in w and "Label more pairs" in w for w in found)


@pytest.mark.parametrize(
    "lengths, expected",
    [
        ((100, 110, 150), "36% longer than in round_001"),
        ((100, 120, 140), "40% longer than in base"),
        ((100, 100, 40), "60% shorter than in round_001"),
        ((100, 110, 120), None),
    ],
)
def test_length_drift_is_measured_against_the_previous_round_then_the_base(lengths, expected):
    history = [
        RoundDiagnostics(name, mean_length=n)
        for name, n in zip(("base", "round_001", "round_002"), lengths, strict=True)
    ]
    found = warnings(history)
    if expected is None:
        assert found == []
    else:
        (text,) = found
        assert expected in text and "beta" in text


@pytest.mark.parametrize("prev, last, expected", [(0.02, 0.06, 1), (0.04, 0.06, 0), (0.01, 0.03, 0)])
def test_kl_jump_needs_double_the_previous_and_over_005_nats(prev, last, expected):
    found = warnings(
        [RoundDiagnostics("round_001", kl_per_token=prev), RoundDiagnostics("round_002", kl_per_token=last)]
    )
    assert len(found) == expected and all("Raise beta" in w for w in found)


def test_degenerate_repetition_and_falling_diversity_are_flagged():
    base = RoundDiagnostics("base", distinct_2=0.8, repeated_4gram=0.05)
    (looping,) = warnings([base, RoundDiagnostics("round_001", distinct_2=0.75, repeated_4gram=0.25)])
    assert "25% of samples repeat a 4-gram" in looping and "Roll back" in looping
    (samey,) = warnings([base, RoundDiagnostics("round_001", distinct_2=0.5, repeated_4gram=0.05)])
    assert "distinct-2 fell from 0.80 to 0.50" in samey
    assert warnings([base, RoundDiagnostics("round_001", distinct_2=0.6, repeated_4gram=0.05)]) == []


def test_repetition_is_judged_against_the_base_s_own_share():
    base = RoundDiagnostics("base", repeated_4gram=0.31)
    assert warnings([base, RoundDiagnostics("round_001", repeated_4gram=0.25)]) == [], "less than the base: no alarm"
    (looping,) = warnings([base, RoundDiagnostics("round_001", repeated_4gram=0.45)])
    assert "45% of samples repeat a 4-gram (the base: 31%)" in looping


def test_mean_nll_pools_tokens_and_foreign_script_counts_letters_outside_the_prompt_s_scripts():
    assert mean_nll([[-1.0, -2.0], [-3.0]]) == pytest.approx(2.0)
    assert math.isnan(mean_nll([[], []]))
    assert foreign_script_share(["Why is the sky blue?"], ["Because of Rayleigh scattering, café."]) == 0.0
    share = foreign_script_share(["Suggest a name."], ["Name: Васлушарь"])  # 4 Latin letters, 9 Cyrillic
    assert share == pytest.approx(9 / 13)
    assert foreign_script_share(["Переведи: cat"], ["кот, cat"]) == 0.0, "a prompt in two scripts allows both"
    assert foreign_script_share(["123?"], ["日本"]) == 1.0, "a prompt without letters expects Latin"
    assert math.isnan(foreign_script_share(["Hi"], ["123"]))
    with pytest.raises(ValueError, match="one prompt per answer"):
        foreign_script_share(["a", "b"], ["x"])


def test_answers_the_base_finds_unlikely_raise_the_fluency_warning():
    base = RoundDiagnostics("base", nll=1.24, foreign_script=0.0)
    assert warnings([base, RoundDiagnostics("round_001", nll=1.4, foreign_script=0.0)]) == []
    (gibberish,) = warnings([base, RoundDiagnostics("round_001", nll=4.16, foreign_script=0.0)])
    assert gibberish.startswith("round_001: its answers score 4.16 nats/token under the base model against 1.24")
    (script,) = warnings([base, RoundDiagnostics("round_001", nll=1.3, foreign_script=0.05)])
    assert "5.0% of its letters are in a script the prompts do not use" in script
