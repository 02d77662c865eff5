"""The health gate a finished round passes before it serves by itself.

    reasons = health_check(policy, base, heldout, config)   # [] : healthy; else one sentence per failed check

`policy` and `base` are the numbers of the round's and the base's answers to the same held-out prompts
(`training/diagnose.py`): "nll" (mean NLL per token under the base model), "foreign_script" (share of letters
in a script the prompt does not use) and, for the policy, "kl_per_token" (from the base) and "lifted_share"
(answers with a token it made far likelier than the base would, such as an invented word; "lifted" shows some).
`heldout` is the round's held-out preference scores after training (accuracy, chosen / rejected rewards, and
"n", how many pairs: accuracy fails only when significantly below its threshold, as a few pairs tell little).
The thresholds are `DPOConfig`'s gate_* fields (None turns a check off); a check whose numbers are unknown is
skipped. A round that fails waits as the candidate, whatever the review setting, until an admin serves it on
purpose.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from evaluation.diagnostics import LIFT_NATS

SIGNIFICANCE = 0.05  # how unlikely a held-out accuracy must be at the threshold for the gate to hold a round back


def below(accuracy: float, n: int | None, threshold: float) -> bool:
    """Whether `accuracy` on `n` held-out pairs is significantly below `threshold` (one-sided exact binomial test
    at SIGNIFICANCE): 2 right of 5 is not (a fair coin does that half the time), 1 of 8 is. Unknown n: not."""
    if not n:
        return False
    right = round(accuracy * n)
    p = sum(math.comb(n, k) * threshold**k * (1 - threshold) ** (n - k) for k in range(right + 1))
    return p < SIGNIFICANCE


def _known(*values) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def health_check(policy: dict, base: dict | None, heldout: dict | None, config) -> list[str]:
    """The checks `policy` fails, each a sentence with its numbers; [] when it may serve."""
    base, heldout, found = base or {}, heldout or {}, []
    nll, base_nll = policy.get("nll"), base.get("nll")
    if config.gate_nll_increase is not None and _known(nll, base_nll) and nll > base_nll + config.gate_nll_increase:
        found.append(
            f"fluency: its answers score {nll:.2f} nats/token under the base model against the base's own "
            f"{base_nll:.2f} (more than +{config.gate_nll_increase:g}): they read as gibberish to it"
        )
    script, base_script = policy.get("foreign_script"), base.get("foreign_script")
    limit = config.gate_foreign_script
    if limit is not None and _known(script, base_script) and script > base_script + limit:
        found.append(
            f"script: {script:.1%} of its letters are in a script the prompt does not use (the base: "
            f"{base_script:.1%}; allowed: +{limit:.0%})"
        )
    kl = policy.get("kl_per_token")
    if config.gate_kl is not None and _known(kl) and kl > config.gate_kl:
        found.append(
            f"KL: {kl:.2f} nats/token from the base (more than {config.gate_kl:g}): it moved too far in one round"
        )
    invented, limit = policy.get("lifted_share"), config.gate_invented
    if limit is not None and _known(invented) and invented > limit:
        shown = "; ".join(f"“{example}”" for example in (policy.get("lifted") or [])[:3])
        found.append(
            f"new words: {invented:.0%} of its answers have a token it made ≥ {LIFT_NATS:g} nats likelier where the "
            f"base finds it unlikely (allowed {limit:.0%}), words the base would not write"
            + (f": {shown}" if shown else "")
        )
    accuracy, n = heldout.get("accuracy"), heldout.get("n")
    low = config.gate_heldout_accuracy
    if low is not None and _known(accuracy) and accuracy < low and below(accuracy, n, low):
        found.append(
            f"held-out accuracy {accuracy:.0%} of {n} pairs is below {low:.0%}, more than chance explains: it did "
            "not learn the taste of labels it never saw"
        )
    chosen, rejected = heldout.get("chosen_reward"), heldout.get("rejected_reward")
    drop = config.gate_logratio_drop
    if drop is not None and _known(chosen, rejected):
        chosen, rejected = chosen / config.beta, rejected / config.beta  # rewards are beta * log(pi / pi_ref)
        if chosen < -drop and rejected < -drop:
            found.append(
                f"both held-out answers became less likely: log π/π_ref {chosen:+.0f} nats for the chosen and "
                f"{rejected:+.0f} for the rejected (allowed -{drop:g}): it made even the answers people liked unlikely"
            )
    return found


def base_numbers(diagnostics: dict | None, earlier: Iterable[dict]) -> dict | None:
    """The base's numbers to hold a round's against: measured by this round, else by an earlier round on the same
    prompts and settings (`prompts_key`); None when neither has them."""
    diagnostics = diagnostics or {}
    if diagnostics.get("base"):
        return diagnostics["base"]
    key = diagnostics.get("prompts_key")
    for metrics in earlier:
        found = (metrics or {}).get("diagnostics") or {}
        if key and found.get("prompts_key") == key and (found.get("base") or {}).get("nll") is not None:
            return found["base"]
    return None


def gate_record(metrics: dict, config, earlier: Iterable[dict] = ()) -> dict:
    """What the gate decided about a finished round, as its metrics keep it: {"passed", "reasons"}; `earlier`:
    the metrics of earlier done rounds, newest first, where the base may have been measured."""
    diagnostics = metrics.get("diagnostics") or {}
    base = base_numbers(diagnostics, earlier)
    heldout = dict(metrics.get("heldout_after") or {}, n=metrics.get("n_heldout", 0))
    reasons = health_check(diagnostics.get("policy") or {}, base, heldout, config)
    return {"passed": not reasons, "reasons": reasons}


def failed(metrics: dict | None) -> list[str]:
    """The reasons a round's recorded gate held it back ([] when it passed, or for rounds from before the gate)."""
    gate = (metrics or {}).get("gate") or {}
    return [] if gate.get("passed", True) else list(gate.get("reasons", []))


__all__ = ["base_numbers", "failed", "gate_record", "health_check"]
