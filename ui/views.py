"""What the app shows, as text and rows: pure functions of domain values, no gradio, tested on hand-made inputs.

    pair_status("round_002", Status("round_002", queued=3, depth=8, sampling_error=None))
    # 'Pair from **round_002** · 3 ready in the queue'

Each takes what the UI got from `services` (a `Status`, a `RoundStatus`, `Round`s, label counts,
the arena's win rates and strengths) and returns the Markdown or table rows a widget displays; the handlers in
ui/label.py, ui/train.py, ui/compare.py and ui/arena.py only move these between widgets and services.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from markdown_it import MarkdownIt

from services import BASE_VERSION, round_version
from services.rounds import RoundDiagnostics, warnings

if TYPE_CHECKING:
    from services import Round, RoundStatus, Status
    from services.rounds import SelectionReport

ROUND_COLUMNS = (
    "version",
    "status",
    "parent",
    "pairs",
    "arena",
    "edited",
    "ratings",
    "health check",
    "held-out accuracy",
    "held-out margin",
    "final loss",
    "seconds",
    "started",
    "error",
)
PLOT_METRICS = ("loss", "margin", "accuracy")
# Prompts are other people's text: rendered as Markdown (code, lists, emphasis) with no raw HTML and no links,
# images or autolinks, so showing one can neither fetch anything nor lead anywhere; those stay visible as text.
PROMPT_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).disable(
    ["link", "image", "autolink", "html_inline", "html_block", "reference"]
)
BAR_WIDTH = 20


# -- labeling --------------------------------------------------------------------------------------------
def prompt_html(prompt: str) -> str:
    """A prompt as HTML that fetches nothing and links nowhere (see PROMPT_MARKDOWN)."""
    return f'<div class="prompt"><strong>Prompt:</strong>{PROMPT_MARKDOWN.render(prompt)}</div>'


def completion_html(text: str, cut_at: int | None = None, raw: bool = False) -> str:
    """A completion as the Label tab shows it: Markdown (code, lists) rendered like a prompt, or the raw text;
    marked when the token limit cut it."""
    body = f"<pre>{html.escape(text)}</pre>" if raw else PROMPT_MARKDOWN.render(text)
    mark = f'<p class="cut">✂ cut at {cut_at} tokens</p>' if cut_at else ""
    return f'<div class="completion">{body}{mark}</div>'


def waiting_line(status: Status) -> str:
    """While no pair is ready: what the screen waits for, and about how long."""
    if status.sampling_error:
        return f"Waiting for the sampler, which failed: {status.sampling_error}"
    eta = "" if status.eta_s is None else f" ~{max(1, round(status.eta_s))} s"
    return f"⏳ Sampling the next pair…{eta}"


def counters_line(counters: dict[str, int], status: Status, prompts_left: int | None = None) -> str:
    """Labeled today, by me, since the last round, and pairs ready; what to do when prompts run out."""
    text = (
        f"Labeled today **{counters['today']}** · by you **{counters['mine']}** · since the last round "
        f"**{counters['since_round']}** · **{status.queued}** pairs ready"
    )
    if status.queued == 0:
        text += f" · {waiting_line(status)}"
    if prompts_left == 0:
        text += (
            "\n\nEvery prompt has a vote, so new pairs repeat prompts. For fresh ones, add a prompt or import "
            "a file (Prompts, below)."
        )
    return text


def guidelines_html(guidelines: tuple | None) -> str:
    """The newest guidelines, rendered like a prompt, with who wrote them and when."""
    if guidelines is None:
        return '<div class="guidelines"><em>No guidelines yet.</em> An admin can write them below.</div>'
    text, author, when = guidelines
    footer = f'<p class="guidelines-by">by {html.escape(author)}, {when:%Y-%m-%d %H:%M}</p>'
    return f'<div class="guidelines">{PROMPT_MARKDOWN.render(text)}{footer}</div>'


def undo_message(judgement_ids: list[int]) -> str:
    votes = ", ".join(f"#{j}" for j in judgement_ids)
    return f"Undid vote {votes}: it will not be trained on. The pair is back on screen; vote again."


def edit_message(judgement_ids: list[int], source: str) -> str:
    against = "both completions" if source == "blank" else f"the original {source} completion"
    return f"Saved your answer as chosen over {against} (vote {', '.join(f'#{j}' for j in judgement_ids)})."


def pair_status(version: str, status: Status) -> str:
    """Under a pair: which version sampled it, the queue, and background sampling's last error if any."""
    text = f"Pair from **{version}** · {status.queued} ready in the queue"
    return text + (f" · background sampling: {status.sampling_error}" if status.sampling_error else "")


def single_status(version: str, side: str, status: Status) -> str:
    """'Rate one' mode: which of the pair's two completions is on screen (left: 1, right: 2)."""
    number = 1 if side == "left" else 2
    return f"Completion {number} of 2 from **{version}** · {status.queued} pairs ready in the queue"


def queue_status(status: Status) -> str:
    """The sampler as labelers see it: pairs ready, the serving version, any error."""
    text = f"Queue: {status.queued} of {status.depth} pairs ready · serving **{status.serving}**"
    text += f" · background sampling: {status.sampling_error}" if status.sampling_error else ""
    return text + (f"\n\n⚠️ {status.notice}" if status.notice else "")


def serving_line(version: str) -> str:
    return f"Serving **{version}**"


def vote_message(judgement_id: int, choice: str, total: int) -> str:
    return f"Saved vote #{judgement_id} ({choice}). Total votes: {total}."


def rating_message(rating_id: int, rating: str, side: str, counts: dict) -> str:
    """After a 👍 / 👎 on one completion: what was saved, and how many single ratings the kto loss has."""
    return (
        f"Saved {'👍' if rating == 'up' else '👎'} #{rating_id} on completion {1 if side == 'left' else 2}. "
        f"Single ratings: {counts['up']} 👍 / {counts['down']} 👎 (they train the kto loss)."
    )


def label_summary(counts: dict) -> str:
    """`Loop.label_counts()` in words, with the loss each kind of label feeds."""
    return (
        f"**Labels in the store:** {counts['pairs']} pairs (every loss) · {counts['both_bad']} both bad (kto) · "
        f"{counts['up']} 👍 / {counts['down']} 👎 single ratings (kto) · {counts['tie']} ties (not trained)"
    )


# -- rounds ------------------------------------------------------------------------------------------------
def before_after(metrics: dict, key: str, reference: str = "base") -> str:
    """'0.50 → 1.00' for a held-out metric, or '' when the round held nothing out. With the previous policy as
    reference, the policy before training is the reference itself, so 'before' is 0 by definition: '–'."""
    before, after = metrics.get("heldout_before"), metrics.get("heldout_after")
    if not (before and after):
        return ""
    return f"{'–' if reference == 'previous' else f'{before[key]:.2f}'} → {after[key]:.2f}"


def round_row(r: Round) -> dict:
    """One row of the Train tab's rounds table, keyed by ROUND_COLUMNS."""
    loss = (r.metrics.get("train") or {}).get("loss")
    reference = r.config.get("reference", "base")
    return {
        "version": r.version,
        "status": r.status + stopped_early(r.metrics),
        "parent": round_version(r.parent_round) if r.parent_round else BASE_VERSION,
        "pairs": r.n_pairs,
        "arena": r.n_arena,
        "edited": r.n_edited,
        "ratings": r.n_ratings,
        "health check": health_cell(r.metrics),
        "held-out accuracy": before_after(r.metrics, "accuracy", reference),
        "held-out margin": before_after(r.metrics, "margin", reference),
        "final loss": "" if loss is None else f"{loss:.4f}",
        "seconds": r.metrics.get("seconds"),
        "started": r.started_at.strftime("%Y-%m-%d %H:%M"),
        "error": r.error or "",
    }


def health_cell(metrics: dict) -> str:
    """The health gate's verdict on a done round, in the rounds table: passed, or failed with the checks it failed
    and who served it anyway; '' for rounds from before the gate."""
    gate = (metrics or {}).get("gate")
    if not gate:
        return ""
    if gate.get("passed"):
        return "passed"
    served = gate.get("served_anyway") or []
    by = f" · served anyway by {served[-1]['by']} ({served[-1]['at']})" if served else ""
    return "failed: " + "; ".join(gate.get("reasons", [])) + by


def round_rows(rounds: Iterable[Round]) -> list[dict]:
    return [round_row(r) for r in rounds]


def stopped_early(metrics: dict) -> str:
    """' · stopped at step 4 (max_steps)' for a round that stopped before its epochs were done, else ''."""
    stopped = metrics.get("stopped") or {}
    if stopped.get("reason") in (None, "finished"):
        return ""
    return f" · stopped at step {stopped['step']} ({stopped['reason']})"


# -- round diagnostics -----------------------------------------------------------------------------------------
DIAGNOSTIC_METRICS = (  # (RoundDiagnostics field, how the plot and the review table name it)
    ("nll", "NLL per token under the base (nats; fluency, lower reads better)"),
    ("kl_per_token", "KL per token (nats)"),
    ("distinct_2", "distinct-2"),
    ("repeated_4gram", "repeated 4-grams"),
    ("heldout_accuracy", "held-out accuracy"),
    ("heldout_margin", "held-out margin"),
)
LENGTH_METRIC = ("mean_length", "mean length (tokens)")
TABLE_METRICS = (LENGTH_METRIC, *DIAGNOSTIC_METRICS)
NO_DIAGNOSTICS = "No round diagnostics yet: each round measures its answers to held-out prompts when it finishes."


SAMPLED = ("kl_per_token", "mean_length", "distinct_2", "repeated_4gram", "nll", "foreign_script")  # of answers


def round_diagnostics(r: Round) -> RoundDiagnostics:
    """What a finished round measured (its samples' statistics, held-out and training scores), as the warnings
    read it; unknown values (an older round, diagnostics off) stay None."""
    sampled = (r.metrics.get("diagnostics") or {}).get("policy") or {}
    after, train = r.metrics.get("heldout_after") or {}, r.metrics.get("train") or {}
    return RoundDiagnostics(
        r.version,
        **{name: sampled.get(name) for name in SAMPLED},
        heldout_accuracy=after.get("accuracy"),
        heldout_margin=after.get("margin"),
        train_accuracy=train.get("accuracy"),
        chosen_reward=after.get("chosen_reward"),
        rejected_reward=after.get("rejected_reward"),
    )


def diagnostics_history(rounds: Iterable[Round], until: str | None = None) -> list[RoundDiagnostics]:
    """The base (as the newest round that measured it saw it), then every done round oldest first, up to and
    including `until` when given: the history `evaluation.diagnostics.warnings` reads."""
    done = [r for r in rounds if r.status == "done"]
    measured = [(r.metrics.get("diagnostics") or {}).get("base") for r in done]
    base = next((m for m in reversed(measured) if m), {})  # the newest measurement
    history = [RoundDiagnostics(BASE_VERSION, **{k: base.get(k) for k in SAMPLED})]
    for r in done:
        history.append(round_diagnostics(r))
        if r.version == until:
            break
    return history


def diagnostics_rows(history: list[RoundDiagnostics]) -> tuple[list[dict], list[dict]]:
    """The history in long form for two line plots over versions: (version, value, metric) for KL, diversity,
    repetition and held-out scores, and (version, value, metric) for mean length, which has another scale.
    Unknown values are left out; both empty when nothing was measured."""

    def rows(metrics) -> list[dict]:
        return [
            {"version": d.round, "value": round(getattr(d, name), 4), "metric": label}
            for d in history
            for name, label in metrics
            if getattr(d, name) is not None
        ]

    return rows(DIAGNOSTIC_METRICS), rows([LENGTH_METRIC])


def warnings_markdown(history: list[RoundDiagnostics]) -> str:
    """The plain-language warnings about the newest round in `history`, as a Markdown list ('' when none)."""
    return "\n".join(f"- ⚠️ {line}" for line in warnings(history))


def selection_markdown(report: SelectionReport) -> str:
    """How the pairs a selection strategy picked fared against its random control on held-out pairs: the newest
    round, then every round summed (when that says more); '' while no strategy picked pairs."""
    lines = []
    if report.in_latest:
        lines.append(f"- **{report.latest}:** " + " ".join(c.text for c in report.in_latest))
    if report.in_all and (report.rounds > 1 or not report.in_latest):
        rounds = f"{report.rounds} rounds" if report.rounds > 1 else "the one round that recorded them"
        lines.append(f"- **Summed over {rounds}:** " + " ".join(c.text for c in report.in_all))
    if not lines:
        return ""
    heading = "**Pair selection against its random control** (held-out pairs the round's implicit reward ranks right)"
    return heading + "\n\n" + "\n".join(lines)


def review_markdown(
    candidate: str, serving: str, history: list[RoundDiagnostics], gate_failures: Sequence[str] = ()
) -> str:
    """The candidate awaiting review: its diagnostics beside the serving version's, the warnings about it, and
    what to do. `history` ends with the candidate (diagnostics_history(rounds, until=candidate));
    `gate_failures`: the health checks it failed, which held it back."""
    by_version = {d.round: d for d in history}
    ours, theirs = by_version[candidate], by_version.get(serving)
    held = [
        f"### {candidate} failed the health check and was not served",
        "Failed: " + "; ".join(gate_failures) + ".",
        f"**{serving}** keeps serving. Read its answers in Compare (or press *Compare in the Arena*); serving it "
        "anyway is up to an admin, and is recorded.",
    ]
    review = [
        f"### {candidate} is ready for review",
        f"It has not served yet; **{serving}** keeps serving until you serve {candidate} (the serve picker below "
        "has it picked). For a blind comparison first, press *Compare in the Arena* and vote in the Arena tab.",
    ]
    lines = [
        *(held if gate_failures else review),
        "",
        *diagnostics_table([(f"{serving} (serving)", theirs), (candidate, ours)]),
    ]
    found = warnings_markdown(history)
    return "\n".join(lines) + (f"\n\n{found}" if found else f"\n\nNo warnings about {candidate}.")


def diagnostics_table(columns: list[tuple[str, RoundDiagnostics | None]]) -> list[str]:
    """A Markdown table, one column per (heading, diagnostics) and a row per measure; '–' where unknown."""

    def cell(d, name: str) -> str:
        value = getattr(d, name) if d is not None else None
        return "–" if value is None else f"{value:.3f}" if name != "mean_length" else f"{value:.1f}"

    return [
        "| | " + " | ".join(heading for heading, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
        *(f"| {label} | " + " | ".join(cell(d, name) for _, d in columns) + " |" for name, label in TABLE_METRICS),
    ]


def version_change_markdown(first: str, second: str, rounds: Iterable[Round]) -> str:
    """What the newer of two versions changed against the other, from the rounds' diagnostics (length,
    diversity, repetition, KL, held-out scores), with the plain-language warnings about it: the Arena's win
    rate says whether people prefer it, this says how it moved."""
    history = diagnostics_history(rounds)
    order = [d.round for d in history]
    if first not in order or second not in order or first == second:
        return ""
    older, newer = sorted((first, second), key=order.index)
    by_version = {d.round: d for d in history}
    if by_version[newer].mean_length is None and by_version[newer].kl_per_token is None:
        return (
            f"**What {newer} changed:** no diagnostics recorded for it (rounds measure their answers to held-out "
            "prompts when they finish, unless diagnostic_prompts is 0; older rounds did not)."
        )
    lines = [f"**What {newer} changed against {older}** (its answers to held-out prompts):", ""]
    lines += diagnostics_table([(older, by_version[older]), (newer, by_version[newer])])
    found = warnings_markdown(history[: order.index(newer) + 1])
    return "\n".join(lines) + (f"\n\n{found}" if found else f"\n\nNo warnings about {newer}.")


def progress_bar(done: float, width: int = BAR_WIDTH) -> str:
    """'█████░░░░░' for a fraction in [0, 1] (clipped)."""
    filled = round(width * min(max(done, 0.0), 1.0))
    return "█" * filled + "░" * (width - filled)


PHASES = {  # a round's phases in order, as the Train tab names them
    "load": "loading the model",
    "reference": "scoring the labels with the reference",
    "heldout_before": "scoring held-out pairs before training",
    "steps": "training",
    "heldout_after": "scoring held-out pairs after training",
    "diagnostics": "answering held-out prompts (diagnostics and the health check)",
}


def duration(seconds: float) -> str:
    """'45 s', '3 min', '1 h 05 min'."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {round(seconds % 3600 / 60):02d} min"


def phase_line(name: str, phase: dict) -> str:
    """One phase of a running round: done, or a bar with its count, share, time so far and time left."""
    done, total, seconds = phase["done"], phase["total"], phase["seconds"]
    label = PHASES.get(name, name)
    if total and done >= total:
        return f"✓ {label} · {duration(seconds)}"
    share = done / total if total else 0.0
    left = f" · about {duration(seconds / done * (total - done))} left" if done else ""
    return f"`{progress_bar(share)}` {label} · {done}/{total} · {share:.0%} · {duration(seconds)}{left}"


def round_progress(status: RoundStatus) -> str:
    """`services.rounds.status()` as Markdown: state and message, then a line per phase so far (each with its own
    bar, count and time left), or, without phase reports, a bar of the training steps."""
    text = f"**{status.state}** · {status.message}"
    phases = status.phases
    if phases:
        names = [n for n in PHASES if n in phases] + [n for n in phases if n not in PHASES]
        return text + "\n\n" + "  \n".join(phase_line(name, phases[name]) for name in names)
    history = status.history
    if history:
        last = history[-1]
        done = last["step"] / last["total_steps"]
        text += f"\n\n`{progress_bar(done)}` {done:.0%} · {last['seconds']:.0f}s"
    return text


def plot_rows(history: list[dict]) -> list[dict]:
    """The step history in long form (step, value, metric), one line per metric; empty before a round runs
    (the Train tab then hides the plot and says so, rather than drawing an empty axis)."""
    return [{"step": s["step"], "value": s[k], "metric": k} for s in history for k in PLOT_METRICS]


NO_ROUND_YET = "No round yet: once one runs, its loss, reward margin and accuracy are plotted here."


# -- arena -------------------------------------------------------------------------------------------------
ARENA_HELP = (
    "Each battle shows two versions' answers to a prompt no round trained on, as **A** (left) and **B** (right) "
    "in random order; which version is which is revealed after your vote. Keys: 1 A · 2 B · 3 tie · 4 both bad."
)
TIES_AS_HALF = (
    "Win rates count a tie or a *both bad* vote as half a win for each side; ranges are 95% intervals "
    "(Wilson). Strengths are Bradley–Terry ratings on an Elo-like scale with 95% bootstrap intervals, the base "
    "fixed at 1000: 400 points more means 10:1 odds of winning."
)
ARENA_WAITING = "⏳ Sampling the next battle…"
ARENA_SIDE_NAMES = {"left": "A", "right": "B", "tie": "a tie", "both_bad": "both bad"}
LEADERBOARD_COLUMNS = ("rank", "version", "strength", "95% interval", "battles")


def battle_line(battle_id: int, queued: int) -> str:
    """Under a battle: its number and the queue, never the versions (those come after the vote)."""
    return f"Battle #{battle_id} · {queued} more ready · which version is A and which is B is revealed after your vote"


def reveal_line(battle_id: int, side: str, left_version: str, right_version: str) -> str:
    """After a vote: what was voted, and which version was on which side."""
    return (
        f"Saved battle #{battle_id}: you voted **{ARENA_SIDE_NAMES[side]}**. "
        f"A was **{left_version}**, B was **{right_version}**."
    )


def win_rate_line(version: str, opponent: str, wins: int, losses: int, ties: int, rate, min_battles: int) -> str:
    """One pair's result in words: the win rate with its interval, or "not enough battles yet" below the
    threshold; `rate` is an evaluation.WinRate."""
    counts = f"{wins} won, {losses} lost, {ties} tied"
    if not rate.enough:
        return f"**{version}** vs {opponent}: not enough battles yet ({rate.n} of {min_battles}; {counts})."
    return (
        f"**{version}** vs {opponent}: {version} wins **{rate.rate:.0%}** (95% interval {rate.low:.0%}–"
        f"{rate.high:.0%}) of {rate.n} battles ({counts})."
    )


def leaderboard_rows(strengths) -> list[dict]:
    """evaluation.Strength list (best first) as the leaderboard's rows, keyed by LEADERBOARD_COLUMNS."""
    return [
        {
            "rank": rank,
            "version": s.model,
            "strength": round(s.rating),
            "95% interval": f"{s.low:.0f}–{s.high:.0f}",
            "battles": s.battles,
        }
        for rank, s in enumerate(strengths, start=1)
    ]


def strength_rows(strengths, versions: list[str]) -> list[dict]:
    """Strength by version, oldest version first, in long form (version, strength, line) for a line plot: the
    rating and its interval's two ends as three lines."""
    by_version = {s.model: s for s in strengths}
    lines = (("strength", "rating"), ("95% low", "low"), ("95% high", "high"))
    return [
        {"version": v, "strength": round(getattr(by_version[v], field), 1), "line": line}
        for v in versions
        if v in by_version
        for line, field in lines
    ]


def win_rate_rows(pairs, versions: list[str], against: str = BASE_VERSION) -> list[dict]:
    """Each version's win rate against `against` (ties half), oldest version first, in long form (version,
    win rate in %, line) for a line plot over rounds: the rate and its 95% interval's ends, only for versions
    past the battle threshold (below it the results say "not enough battles yet" instead)."""
    rates = {p.version: p.rate for p in pairs if p.opponent == against}
    lines = (("win rate", "rate"), ("95% low", "low"), ("95% high", "high"))
    return [
        {"version": v, "win rate": round(100 * getattr(rates[v], field), 1), "line": line}
        for v in versions
        if v in rates and rates[v].enough
        for line, field in lines
    ]


def matrix_rows(matrix) -> list[dict]:
    """An evaluation.WinMatrix as rows: how often the row's version beat the column's (ties half), with the
    number of battles; '–' where they never met."""
    rows = []
    for i, version in enumerate(matrix.models):
        row = {"version": version}
        for j, opponent in enumerate(matrix.models):
            n = int(matrix.battles[i, j])
            row[opponent] = f"{matrix.fraction[i, j]:.0%} of {n}" if n and i != j else "–"
        rows.append(row)
    return rows
