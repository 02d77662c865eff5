"""Statistics for judging versions: a blind arena between them, audits of the labels, per-round diagnostics, and
a pair-selection strategy against its random control.

Pure functions over plain records (no database, model or gradio imports):

    from evaluation import Battle, bootstrap_bradley_terry, win_rate
    battles = [Battle("base", "round_001", "b")] * 7 + [Battle("base", "round_001", "tie")] * 3
    for s in bootstrap_bradley_terry(battles, ["base", "round_001"], anchor="base"):
        print(f"{s.model}: {s.rating:.0f} ({s.low:.0f}-{s.high:.0f}), {s.battles} battles")
    result = win_rate(wins=7, losses=0, ties=3)
    print(f"{result.rate:.0%}" if result.enough else "not enough battles yet")

    python -m pytest tests/test_evaluation_*.py -q
"""

import importlib

# Names load on first use (PEP 562): the arena's and the audits' statistics need scipy and scikit-learn (~2 s),
# which the app and a round's process should not pay for at start just because the diagnostics (plain Python)
# live in this package too.
_WHERE = {
    "evaluation.arena": (
        "Battle",
        "Strength",
        "WinMatrix",
        "WinRate",
        "bootstrap_bradley_terry",
        "bradley_terry",
        "win_matrix",
        "win_rate",
    ),
    "evaluation.proportions": ("fisher_exact", "wilson_interval"),
    "evaluation.selection": ("SelectionComparison", "SliceAccuracy", "compare_selection", "sum_slices"),
    "evaluation.audit": (
        "Agreement",
        "BiasTest",
        "Rates",
        "Vote",
        "agreement",
        "krippendorff_alpha_nominal",
        "length_bias",
        "position_bias",
        "rates",
    ),
    "evaluation.diagnostics": (
        "Repetition",
        "RoundDiagnostics",
        "distinct_n",
        "kl_per_token",
        "mean_length",
        "repeated_ngram_rate",
        "warnings",
    ),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "Agreement",
    "Battle",
    "BiasTest",
    "Rates",
    "Repetition",
    "RoundDiagnostics",
    "SelectionComparison",
    "SliceAccuracy",
    "Strength",
    "Vote",
    "WinMatrix",
    "WinRate",
    "agreement",
    "bootstrap_bradley_terry",
    "bradley_terry",
    "compare_selection",
    "distinct_n",
    "fisher_exact",
    "kl_per_token",
    "krippendorff_alpha_nominal",
    "length_bias",
    "mean_length",
    "position_bias",
    "rates",
    "repeated_ngram_rate",
    "sum_slices",
    "warnings",
    "win_matrix",
    "win_rate",
    "wilson_interval",
]
