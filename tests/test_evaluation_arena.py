"""Arena statistics on hand-made counts, a Chatbot Arena-style reference fit and simulated arenas."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from sklearn.linear_model import LogisticRegression

from evaluation.arena import Battle, bootstrap_bradley_terry, bradley_terry, win_matrix, win_rate

TRUE = {"base": 1000.0, "round_001": 1050.0, "round_002": 1120.0, "round_003": 1200.0}


def simulate(n: int, rng: np.random.Generator, ratings: dict[str, float] = TRUE, tie: float = 0.1) -> list[Battle]:
    """n battles between random pairs under Bradley–Terry; a share `tie` are ties or "both bad", drawn so that
    each side's expected score (ties counting half) is still the Bradley–Terry win probability."""
    models = list(ratings)
    battles = []
    for _ in range(n):
        i, j = rng.choice(len(models), 2, replace=False)
        a, b = models[i], models[j]
        p = 1 / (1 + 10 ** ((ratings[b] - ratings[a]) / 400))
        if rng.random() < tie:
            winner = "tie" if rng.random() < 0.5 else "both_bad"
        else:
            winner = "a" if rng.random() < (p - tie / 2) / (1 - tie) else "b"
        battles.append(Battle(a, b, winner))
    return battles


def textbook_wilson(x: float, n: int, z: float) -> tuple[float, float]:
    p = x / n
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return center - half, center + half


@pytest.mark.parametrize("wins, losses", [(7, 3), (0, 12), (30, 18), (1, 0), (50, 50)])
def test_win_rate_matches_scipys_wilson_interval(wins, losses):
    result = win_rate(wins, losses, 0)
    ci = binomtest(wins, wins + losses).proportion_ci(0.95, method="wilson")
    assert result.rate == pytest.approx(wins / (wins + losses))
    assert (result.low, result.high) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_ties_count_as_half_a_win():
    result = win_rate(wins=6, losses=2, ties=4, confidence=0.9)
    assert result.rate == pytest.approx(8 / 12) and result.n == 12
    assert (result.low, result.high) == pytest.approx(textbook_wilson(8, 12, norm.ppf(0.95)), abs=1e-12)


def test_too_few_battles_are_flagged_not_hidden():
    assert not win_rate(5, 3, 1).enough and win_rate(5, 4, 1).enough
    empty = win_rate(0, 0, 0)
    assert math.isnan(empty.rate) and (empty.low, empty.high) == (0.0, 1.0) and not empty.enough
    with pytest.raises(ValueError, match="must be >= 0"):
        win_rate(-1, 2, 0)


def test_battles_reject_unknown_winners_and_self_play():
    with pytest.raises(ValueError, match="winner must be one of"):
        Battle("base", "round_001", "left")
    with pytest.raises(ValueError, match="two different models"):
        Battle("base", "base", "a")


def test_win_matrix_counts_ties_and_both_bad_as_half():
    battles = [Battle("x", "y", "a")] * 3 + [
        Battle("y", "x", "a"),
        Battle("x", "y", "tie"),
        Battle("y", "x", "both_bad"),
    ]
    m = win_matrix(battles, ["x", "y", "z"])
    assert m.wins.tolist() == [[0, 3, 0], [1, 0, 0], [0, 0, 0]]
    assert m.ties[0, 1] == m.ties[1, 0] == 2 and m.battles[0, 1] == 6
    assert m.fraction[0, 1] == pytest.approx(4 / 6) and m.fraction[1, 0] == pytest.approx(2 / 6)
    assert np.isnan(m.fraction[0, 2]) and np.isnan(m.fraction[0, 0])
    cell = win_rate(m.wins[0, 1], m.wins[1, 0], m.ties[0, 1])
    assert cell.rate == pytest.approx(m.fraction[0, 1])


def test_two_models_give_the_closed_form_gap():
    # 6 wins, 2 losses, 1 tie, 1 both-bad: 7 points to 3, so 10 ** (gap / 400) = 7 / 3.
    battles = [Battle("x", "y", "a")] * 6 + [Battle("x", "y", "b")] * 2
    battles += [Battle("x", "y", "tie"), Battle("y", "x", "both_bad")]
    ratings = bradley_terry(battles, ["x", "y"], l2=0)
    assert ratings["x"] - ratings["y"] == pytest.approx(400 * math.log10(7 / 3), abs=1e-3)
    assert (ratings["x"] + ratings["y"]) / 2 == pytest.approx(1000)
    anchored = bradley_terry(battles, ["x", "y"], anchor="y", l2=0)
    assert anchored["y"] == 1000 and anchored["x"] == pytest.approx(1000 + 400 * math.log10(7 / 3), abs=1e-3)


def chatbot_arena_mle(battles: list[Battle], models: list[str]) -> np.ndarray:
    """Chatbot Arena's compute_mle_elo: every battle twice, a tie as one win each way, ±log(10) columns."""
    rows = battles + battles
    x = np.zeros((len(rows), len(models)))
    y = np.zeros(len(rows))
    for r, b in enumerate(rows):
        x[r, models.index(b.model_a)], x[r, models.index(b.model_b)] = math.log(10), -math.log(10)
        y[r] = b.winner == "a" or (b.winner in ("tie", "both_bad") and r < len(battles))
    fit = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000).fit(x, y)
    ratings = 400 * fit.coef_[0] + 1000
    return ratings - ratings.mean() + 1000


def test_unpenalized_fit_matches_chatbot_arenas_duplicated_rows():
    models = list(TRUE)
    battles = simulate(400, np.random.default_rng(3))
    ours = bradley_terry(battles, models, l2=0)
    assert [ours[m] for m in models] == pytest.approx(chatbot_arena_mle(battles, models).tolist(), abs=0.05)


def test_the_prior_keeps_an_unbeaten_model_finite():
    ratings = bradley_terry([Battle("x", "y", "a")] * 5, ["x", "y"])
    assert 1000 < ratings["x"] < 1300 and ratings["x"] + ratings["y"] == pytest.approx(2000)


def test_a_simulated_arena_recovers_the_true_order():
    battles = simulate(3000, np.random.default_rng(0))
    strengths = bootstrap_bradley_terry(battles, list(TRUE), rounds=50, anchor="base")
    assert [s.model for s in strengths] == ["round_003", "round_002", "round_001", "base"]
    for s in strengths:
        assert s.low <= s.rating <= s.high and s.rating == pytest.approx(TRUE[s.model], abs=35)
    assert sum(s.battles for s in strengths) == 2 * 3000
    base = next(s for s in strengths if s.model == "base")
    assert base.rating == base.low == base.high == 1000


def test_bootstrap_intervals_cover_the_truth_at_about_the_stated_rate():
    rng = np.random.default_rng(7)
    hits = checks = 0
    for arena in range(50):
        battles = simulate(400, rng)
        for s in bootstrap_bradley_terry(battles, list(TRUE), rounds=50, seed=arena, anchor="base"):
            if s.model != "base":
                checks += 1
                hits += s.low <= TRUE[s.model] <= s.high
    assert 0.85 <= hits / checks <= 1.0


def test_bootstrap_is_reproducible_from_its_seed():
    battles = simulate(200, np.random.default_rng(1))
    first = bootstrap_bradley_terry(battles, list(TRUE), rounds=20, seed=5)
    assert first == bootstrap_bradley_terry(battles, list(TRUE), rounds=20, seed=5)
    assert first != bootstrap_bradley_terry(battles, list(TRUE), rounds=20, seed=6)


def test_rankings_explain_what_is_missing():
    battles = [Battle("x", "y", "a")]
    with pytest.raises(ValueError, match="no battles yet"):
        bradley_terry([], ["x", "y"])
    with pytest.raises(ValueError, match="at least two models"):
        bradley_terry(battles, ["x"])
    with pytest.raises(ValueError, match="'z', which is not in models"):
        bradley_terry(battles + [Battle("x", "z", "b")], ["x", "y"])
    with pytest.raises(ValueError, match="anchor 'base' is not in models"):
        bradley_terry(battles, ["x", "y"], anchor="base")
    with pytest.raises(ValueError, match=r"never compared with each other: \[\['x', 'y'\], \['z'\]\]"):
        bradley_terry(battles, ["x", "y", "z"])
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        bradley_terry(battles, ["x", "y"], l2=-1)
    with pytest.raises(ValueError, match="rounds must be >= 2"):
        bootstrap_bradley_terry(battles, ["x", "y"], rounds=1)
