"""Statistics for judging versions: a blind arena between them, audits of the labels, and per-round diagnostics.

Pure functions over plain records (no database, model or gradio imports):

    from evaluation import Battle, bootstrap_bradley_terry, win_rate
    battles = [Battle("base", "round_001", "b")] * 7 + [Battle("base", "round_001", "tie")] * 3
    for s in bootstrap_bradley_terry(battles, ["base", "round_001"], anchor="base"):
        print(f"{s.model}: {s.rating:.0f} ({s.low:.0f}-{s.high:.0f}), {s.battles} battles")
    result = win_rate(wins=7, losses=0, ties=3)
    print(f"{result.rate:.0%}" if result.enough else "not enough battles yet")

    python -m pytest tests/test_evaluation_*.py -q
"""

from evaluation.arena import (
    Battle,
    Strength,
    WinMatrix,
    WinRate,
    bootstrap_bradley_terry,
    bradley_terry,
    wilson_interval,
    win_matrix,
    win_rate,
)
from evaluation.audit import (
    Agreement,
    BiasTest,
    Rates,
    Vote,
    agreement,
    krippendorff_alpha_nominal,
    length_bias,
    position_bias,
    rates,
)
from evaluation.diagnostics import (
    Repetition,
    RoundDiagnostics,
    distinct_n,
    kl_per_token,
    mean_length,
    repeated_ngram_rate,
    warnings,
)

__all__ = [
    "Agreement",
    "Battle",
    "BiasTest",
    "Rates",
    "Repetition",
    "RoundDiagnostics",
    "Strength",
    "Vote",
    "WinMatrix",
    "WinRate",
    "agreement",
    "bootstrap_bradley_terry",
    "bradley_terry",
    "distinct_n",
    "kl_per_token",
    "krippendorff_alpha_nominal",
    "length_bias",
    "mean_length",
    "position_bias",
    "rates",
    "repeated_ngram_rate",
    "warnings",
    "win_matrix",
    "win_rate",
    "wilson_interval",
]
