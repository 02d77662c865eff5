"""What the app shows, as text and rows: pure functions of domain values, no gradio, tested on hand-made inputs.

    pair_status("round_002", Status("round_002", queued=3, depth=8, sampling_error=None))
    # 'Pair from **round_002** · 3 ready in the queue'

Each takes what the UI got from `services` (a `Status`, a `RoundRunner.status()` dict, `Round`s, label counts)
and returns the Markdown or table rows a widget displays; the handlers in ui/label.py, ui/train.py and
ui/compare.py only move these between widgets and services.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from markdown_it import MarkdownIt

from storage import BASE_VERSION, round_version

if TYPE_CHECKING:
    from services import Status
    from storage import Round

ROUND_COLUMNS = (
    "version",
    "status",
    "parent",
    "pairs",
    "ratings",
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
        "status": r.status,
        "parent": round_version(r.parent_round) if r.parent_round else BASE_VERSION,
        "pairs": r.n_pairs,
        "ratings": r.n_ratings,
        "held-out accuracy": before_after(r.metrics, "accuracy", reference),
        "held-out margin": before_after(r.metrics, "margin", reference),
        "final loss": "" if loss is None else f"{loss:.4f}",
        "seconds": r.metrics.get("seconds"),
        "started": r.started_at.strftime("%Y-%m-%d %H:%M"),
        "error": r.error or "",
    }


def round_rows(rounds: Iterable[Round]) -> list[dict]:
    return [round_row(r) for r in rounds]


def progress_bar(done: float, width: int = BAR_WIDTH) -> str:
    """'█████░░░░░' for a fraction in [0, 1] (clipped)."""
    filled = round(width * min(max(done, 0.0), 1.0))
    return "█" * filled + "░" * (width - filled)


def round_progress(status: dict) -> str:
    """`RoundRunner.status()` as Markdown: state and message, then a bar, percent and seconds once steps run."""
    text = f"**{status['state']}** · {status['message']}"
    history = status["history"]
    if history:
        last = history[-1]
        done = last["step"] / last["total_steps"]
        text += f"\n\n`{progress_bar(done)}` {done:.0%} · {last['seconds']:.0f}s"
    return text


def plot_rows(history: list[dict]) -> list[dict]:
    """The step history in long form (step, value, metric) for one line per metric; one zero row when empty,
    so the plot has axes before the first step."""
    rows = [{"step": s["step"], "value": s[k], "metric": k} for s in history for k in PLOT_METRICS]
    return rows or [{"step": 0, "value": 0.0, "metric": "loss"}]
