"""The Audit tab (admins only): per labeler and round, how many votes, how often the left side and the longer
completion win (exact binomial tests against 50%), ties, both-bad and skips; and, from second looks (judged
pairs shown again to another labeler), Cohen's kappa per pair of labelers and Krippendorff's alpha.

Built by `ui.build_demo`; the statistics are evaluation/audit.py's (through services/audit.py), the votes come from
`services.audit`. The functions above the layout turn plain data into the tab's words and tables and are tested on
their own.
API names: /audit (everything the tab shows) and /set_second_look_share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gradio as gr
import pandas as pd

from services import Services
from ui import guard
from ui.guard import bind

if TYPE_CHECKING:  # evaluation imports scipy and scikit-learn (~2 s): loaded when an audit is asked for, not at start
    from services.audit import Vote

MIN_VOTES = 10  # evaluation.audit.MIN_VOTES: below it a share says "not enough votes yet" instead of a number
NOT_ENOUGH = "not enough votes yet"
ALL_ROUNDS = "all rounds"
AUDIT_COLUMNS = (
    "labeler",
    "round",
    "votes",
    "picks left",
    "p (left)",
    "picks longer",
    "p (longer)",
    "ties",
    "both bad",
    "skips",
)
AGREEMENT_COLUMNS = ("labelers", "Cohen's κ", "shared pairs")
AUDIT_HELP = (
    "Sides are shown in random order, so a careful labeler picks the left completion about half the time; a "
    "share far from 50% (an exact binomial test, p < 0.05) is a position bias. Picking the longer completion far "
    "more than half the time is a length bias, and rounds trained on such labels learn to write longer. Undone "
    "votes and edits to chosen are left out; second looks count as their labeler's votes. Rounds are the policy "
    f"version a pair was sampled from. Groups with fewer than {MIN_VOTES} votes say *{NOT_ENOUGH}*."
)


# -- words and tables, from plain data -----------------------------------------------------------------------
def vote_groups(votes: Sequence[Vote]) -> list[tuple[str, str, list[Vote]]]:
    """(labeler, round, their votes) per labeler (sorted) and round (sorted), then the labeler's votes over
    all rounds when they labeled under more than one."""
    by: dict[str, dict[str, list[Vote]]] = {}
    for v in votes:
        by.setdefault(v.labeler, {}).setdefault(v.batch or "?", []).append(v)
    groups = []
    for labeler in sorted(by):
        rounds = by[labeler]
        groups += [(labeler, name, rounds[name]) for name in sorted(rounds)]
        if len(rounds) > 1:
            groups.append((labeler, ALL_ROUNDS, [v for name in sorted(rounds) for v in rounds[name]]))
    return groups


def _share(rate: float, n: int, min_votes: int) -> str:
    return NOT_ENOUGH if n < min_votes or math.isnan(rate) else f"{rate:.0%}"


def _p(p: float, n: int, min_votes: int) -> str:
    return "" if n < min_votes else f"{p:.2g}"


def audit_row(labeler: str, round_name: str, votes: Sequence[Vote], min_votes: int = MIN_VOTES) -> dict:
    """One row of the table: a group's votes, its left and longer shares with p-values, its tie, both-bad and
    skip shares; each share "not enough votes yet" below `min_votes` votes behind it."""
    from services.audit import length_bias, position_bias, rates

    (left,) = position_bias(votes)
    longer, (share,) = length_bias(votes), rates(votes)
    n = len(votes)
    return {
        "labeler": labeler,
        "round": round_name,
        "votes": n,
        "picks left": _share(left.rate, left.n, min_votes),
        "p (left)": _p(left.p_value, left.n, min_votes),
        "picks longer": _share(longer.rate, longer.n, min_votes),
        "p (longer)": _p(longer.p_value, longer.n, min_votes),
        "ties": _share(share.tie, n, min_votes),
        "both bad": _share(share.both_bad, n, min_votes),
        "skips": _share(share.skip, n, min_votes),
    }


def audit_rows(votes: Sequence[Vote], min_votes: int = MIN_VOTES) -> list[dict]:
    return [audit_row(labeler, name, group, min_votes) for labeler, name, group in vote_groups(votes)]


def bias_warnings(labeler: str, round_name: str, votes: Sequence[Vote], min_votes: int = MIN_VOTES) -> list[str]:
    """Plain-language lines for a group's biases: a left or right preference, a longer or shorter preference
    (each with at least `min_votes` votes and p < 0.05), and mostly votes that make no pair."""
    from services.audit import SIGNIFICANCE, length_bias, position_bias, rates

    who = f"**{labeler}** ({round_name})"
    (left,) = position_bias(votes)
    longer, (share,) = length_bias(votes), rates(votes)
    lines = []
    if left.n >= min_votes and left.p_value < SIGNIFICANCE:
        side = "left" if left.rate > 0.5 else "right"
        lines.append(
            f"{who} picks the left completion {left.rate:.0%} of the time (n={left.n}, p = {left.p_value:.2g}): "
            f"a position bias toward the {side}. Ask them to read both answers before voting."
        )
    if longer.n >= min_votes and longer.p_value < SIGNIFICANCE:
        what = "longer" if longer.rate > 0.5 else "shorter"
        lines.append(
            f"{who} picks the longer completion {longer.rate:.0%} of the time (n={longer.n}, "
            f"p = {longer.p_value:.2g}): a length bias toward {what} answers; rounds trained on them drift {what}."
        )
    unpaired = share.tie + share.both_bad + share.skip
    if share.n >= min_votes and unpaired > 0.5:
        lines.append(
            f"{who}: {unpaired:.0%} of votes are ties, both bad or skips, which make no DPO pair; if the answers "
            "often look alike, sample more varied ones."
        )
    return lines


def own_labels_markdown(labeler: str, votes: Sequence[Vote], min_votes: int = MIN_VOTES) -> str:
    """For the Arena's results: whether `labeler`'s own labels (all rounds) lean to one side or to length, in
    plain words, so whoever judges a round also sees what their labels taught it."""
    from services.audit import length_bias, position_bias

    mine = [v for v in votes if v.labeler == labeler]
    who = f"**Your labels** ({labeler})"
    left = next(iter(position_bias(mine)), None)  # None: no votes yet
    if left is None or left.n < min_votes:
        n = 0 if left is None else left.n
        return f"{who}: not enough votes yet ({n} of {min_votes} picks) to tell a position or length bias."
    found = bias_warnings(labeler, ALL_ROUNDS, mine, min_votes)
    if found:
        return "\n".join(f"- ⚠️ {line}" for line in found)
    longer = length_bias(mine)
    return (
        f"{who}: no sign of a position or length bias in {left.n} picks (left {left.rate:.0%}, longer "
        f"{longer.rate:.0%} of {longer.n})."
    )


def audit_summary(votes: Sequence[Vote], min_votes: int = MIN_VOTES) -> str:
    """The tab's first lines: how many votes by how many labelers, then each bias found, or that none was."""
    if not votes:
        return "**No votes yet.** Label some pairs first."
    labelers = len({v.labeler for v in votes})
    head = f"**{len(votes)} votes** by {labelers} labeler{'s' if labelers != 1 else ''}."
    warnings = [line for group in vote_groups(votes) for line in bias_warnings(*group, min_votes)]
    if not warnings:
        return f"{head} No bias found in groups of {min_votes} votes or more."
    return "\n".join([head, "", *(f"- ⚠️ {line}" for line in warnings)])


def agreement_view(
    labels: Mapping[str, Mapping[str, str]],
    completions: Mapping[str, tuple[str, str]],
    min_shared: int = MIN_VOTES,
) -> tuple[str, list[dict]]:
    """Agreement in words and a row per pair of labelers, from `services.audit.agreement_labels()`: Krippendorff's
    alpha over all doubly-labeled pairs, each labeler's agreement with the others' majority, and Cohen's kappa
    per pair of labelers, each with the pairs it rests on ("not enough …" below `min_shared` of them)."""
    from services.audit import agreement

    result = agreement(labels, completions)
    items = sum(len([lab for lab in by.values() if lab != "skip"]) >= 2 for by in labels.values())
    if items < min_shared:
        text = f"Krippendorff's α: not enough doubly-labeled pairs yet ({items} of {min_shared})."
    else:
        text = f"Krippendorff's α = **{result.alpha:.2f}** over {items} doubly-labeled pairs. {result.plain}"
    majority = [
        f"- {who} agrees with the others' majority on "
        + (f"{rate:.0%} of {n} pairs" if n >= min_shared else f"{n} pairs: {NOT_ENOUGH}")
        for who, (rate, n) in result.with_majority.items()
    ]
    rows = [
        {
            "labelers": f"{a} & {b}",
            "Cohen's κ": _kappa(result.kappa[(a, b)], result.shared[(a, b)], min_shared),
            "shared pairs": result.shared[(a, b)],
        }
        for a, b in result.kappa
    ]
    return "\n".join([text, *([""] + majority if majority else [])]), rows


def _kappa(kappa: float, shared: int, min_shared: int) -> str:
    if shared < min_shared:
        return "not enough shared pairs yet"
    return "undefined (one label throughout)" if math.isnan(kappa) else f"{kappa:.2f}"


def second_look_message(second_vote_id: int, choice: str, total: int) -> str:
    """After a vote on a second look: saved, for agreement only (`total`, the training votes, is unchanged)."""
    return (
        f"Saved second look #{second_vote_id} ({choice}): this pair was judged before, so your vote measures "
        f"agreement between labelers and does not train. Total votes: {total}."
    )


# -- handlers ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditTab:
    summary: gr.Markdown
    table: gr.Dataframe
    share: gr.Slider
    agreement: gr.Markdown
    kappas: gr.Dataframe

    def outputs(self) -> list[gr.components.Component]:
        return [self.summary, self.table, self.share, self.agreement, self.kappas]


def counted_votes(services: Services) -> list[Vote]:
    """Every counted vote in the store, as evaluation/audit.py takes them."""
    return services.audit.votes()


def show_audit(services: Services, tab: AuditTab, request: gr.Request) -> dict:
    """Everything the tab shows, computed afresh from the store."""
    guard.require(services, request, "audit labels")
    votes = counted_votes(services)
    text, rows = agreement_view(*services.audit.agreement_labels())
    second = services.audit.count_second_votes()
    return {
        tab.summary: audit_summary(votes),
        tab.table: pd.DataFrame(audit_rows(votes), columns=list(AUDIT_COLUMNS)),
        tab.share: services.audit.second_look_share(),
        tab.agreement: f"**{second} second looks.** {text}",
        tab.kappas: pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS)),
    }


def set_share(services: Services, share: float, request: gr.Request) -> str:
    guard.require(services, request, "set second looks")
    try:
        services.audit.set_second_look_share(share)
    except ValueError as err:
        raise gr.Error(str(err)) from err
    if not share:
        return "Second looks are off: every pair served is a new one."
    return f"About {share:.0%} of the pairs served are now second looks (while others' judged pairs remain)."


# -- layout and wiring -------------------------------------------------------------------------------------
def build(services: Services, tab_block: gr.Tab) -> AuditTab:
    """The tab's widgets and events, inside `tab_block`; it fills in when opened and on Refresh."""
    gr.Markdown(AUDIT_HELP)
    refresh = gr.Button("Refresh", size="sm")
    summary = gr.Markdown()
    table = gr.Dataframe(headers=list(AUDIT_COLUMNS), label="Per labeler and round", interactive=False)
    gr.Markdown("### Agreement between labelers")
    with gr.Row():
        share = gr.Slider(
            0.0,
            1.0,
            value=services.audit.second_look_share(),
            step=0.05,
            label="Share of pairs shown again to a second labeler (0: off); their votes never train",
            scale=3,
        )
        save = gr.Button("Save share", scale=1)
    share_status = gr.Markdown()
    agreement_text = gr.Markdown()
    kappas = gr.Dataframe(headers=list(AGREEMENT_COLUMNS), label="Cohen's κ per pair of labelers", interactive=False)
    tab = AuditTab(summary, table, share, agreement_text, kappas)
    shown = bind(show_audit, services, tab)
    refresh.click(shown, None, tab.outputs(), api_name="audit", concurrency_limit=1, show_progress="hidden")
    tab_block.select(shown, None, tab.outputs(), api_name=False, show_progress="hidden")
    save.click(bind(set_share, services), share, share_status, api_name="set_second_look_share")
    return tab
