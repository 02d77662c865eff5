"""The Label tab: two completions from the serving policy, a vote (keys 1–5), or 👍 / 👎 on one in 'Rate one' mode.

Built by `ui.build_demo`; `build(services)` returns the tab's widgets as a `LabelTab`, which handlers receive
(bound with functools.partial) to key their returns by component. API names: /next_pair, /vote_<choice>,
/rate_<rating>, /apply_settings, /add_prompt, /import_prompts, /queue_status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr

from labeling.prompts import PromptFileError
from labeling.sampler import Pair
from services import Services
from serving import SamplingSettings
from storage import StoreError
from storage.labels import LABEL_USE
from ui import guard, views
from ui.guard import bind

CHOICE_BUTTONS = (  # (choice, label, key)
    ("left", "👈 Left is better", "1"),
    ("right", "Right is better 👉", "2"),
    ("tie", "🤝 Tie", "3"),
    ("both_bad", "👎 Both bad", "4"),
    ("skip", "Skip", "5"),
)
RATE_BUTTONS = (  # (rating, label, key) in "Rate one" mode; skip stores nothing
    ("up", "👍 Good", "1"),
    ("down", "👎 Bad", "2"),
    ("skip", "Skip", "5"),
)
MODES = ("Compare two", "Rate one")
KEYS_HELP = "Keys — compare: 1 left · 2 right · 3 tie · 4 both bad · 5 skip; rate one: 1 👍 · 2 👎 · 5 skip."


@dataclass(frozen=True)
class LabelTab:
    pair: gr.State  # the Pair on screen, as a dict (None after a vote)
    side: gr.State  # 'Rate one' mode: which completion of it is on screen
    prompt: gr.HTML
    left: gr.Textbox
    right: gr.Textbox
    single: gr.Textbox
    compare_view: gr.Column
    rate_view: gr.Column
    pair_status: gr.Markdown
    vote_status: gr.Markdown
    new_prompt: gr.Textbox
    prompt_status: gr.Markdown
    sampling: tuple[gr.Slider, gr.Slider, gr.Slider]  # temperature, top-p, max new tokens; Compare uses them too
    admin_only: tuple[gr.components.Component, ...]  # hidden from labelers (the handlers refuse them anyway)


# -- handlers --------------------------------------------------------------------------------------------------
def show_pair(services: Services, tab: LabelTab, pair: Pair) -> dict:
    return {
        tab.pair: dataclasses.asdict(pair),
        tab.prompt: views.prompt_html(pair.prompt),
        tab.left: pair.left,
        tab.right: pair.right,
        tab.pair_status: views.pair_status(pair.version, services.status()),
    }


def show_single(services: Services, tab: LabelTab, pair: Pair, side: str) -> dict:
    """'Rate one' mode: one completion of `pair` (its left, then its right) on screen."""
    return {
        tab.pair: dataclasses.asdict(pair),
        tab.side: side,
        tab.prompt: views.prompt_html(pair.prompt),
        tab.single: pair.left if side == "left" else pair.right,
        tab.pair_status: views.single_status(pair.version, side, services.status()),
    }


def next_pair(services: Services, tab: LabelTab) -> dict:
    try:
        return show_pair(services, tab, services.loop.next_pair())
    except Exception as err:  # sampling failed or there is nothing to label: say why on screen
        raise gr.Error(str(err)) from err


def vote(
    services: Services, tab: LabelTab, choice: str, pair_state: dict | None, typed: str, request: gr.Request
) -> Iterator[dict]:
    """Store the vote and say so, then show the next pair: one request, so the next pair is on screen one
    round trip after the click (an API client's `predict` returns the vote's message with the next pair)."""
    name = guard.labeler(services, request, typed)
    if not pair_state:
        raise gr.Error("No pair on screen: press 'Next pair' first.")
    try:
        judgement_id = services.loop.vote(Pair(**pair_state), choice, name)
    except (ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    total = services.store.count_judgements()
    saved = {tab.pair: None, tab.vote_status: views.vote_message(judgement_id, choice, total)}
    yield saved
    try:
        yield saved | show_pair(services, tab, services.loop.next_pair())
    except Exception as err:  # the vote is stored whatever happens to the next pair: say why there is none
        yield saved | {tab.prompt: "", tab.left: "", tab.right: "", tab.pair_status: f"No next pair: {err}"}


def next_single(services: Services, tab: LabelTab, pair_state: dict | None, side: str | None) -> dict:
    """'Rate one' mode: the other completion of the pair on screen, else the left one of a new pair."""
    try:
        if pair_state and side == "left":
            return show_single(services, tab, Pair(**pair_state), "right")
        return show_single(services, tab, services.loop.next_pair(), "left")
    except Exception as err:
        raise gr.Error(str(err)) from err


def rate(
    services: Services,
    tab: LabelTab,
    rating: str,
    pair_state: dict | None,
    side: str | None,
    typed: str,
    request: gr.Request,
) -> dict:
    """Store a 👍 / 👎 on the completion on screen (skip stores nothing), then show the next completion."""
    name = guard.labeler(services, request, typed)
    if rating == "skip":
        return next_single(services, tab, pair_state, side) | {tab.vote_status: "Skipped; nothing was stored."}
    if not pair_state or side not in ("left", "right"):
        raise gr.Error("No completion on screen: press Skip [5] to fetch one.")
    try:
        rating_id = services.loop.rate(Pair(**pair_state), side, rating, name)
    except (ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    message = views.rating_message(rating_id, rating, side, services.loop.label_counts())
    return next_single(services, tab, pair_state, side) | {tab.vote_status: message}


def switch_mode(services: Services, tab: LabelTab, mode: str, pair_state: dict | None) -> dict:
    """Show the widgets of `mode` with the pair on screen ('Rate one' starts at its left completion)."""
    rating = mode == MODES[1]
    shown = {tab.compare_view: gr.update(visible=not rating), tab.rate_view: gr.update(visible=rating)}
    shown[tab.side] = "left"
    if not pair_state:
        return shown | {tab.single: "", tab.left: "", tab.right: "", tab.pair_status: ""}
    pair, status = Pair(**pair_state), services.status()
    text = views.single_status(pair.version, "left", status) if rating else views.pair_status(pair.version, status)
    return shown | {tab.single: pair.left, tab.left: pair.left, tab.right: pair.right, tab.pair_status: text}


def add_prompt(services: Services, tab: LabelTab, text: str) -> dict:
    try:
        prompt_id = services.loop.add_prompt(text)
    except (ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    message = f"Added prompt #{prompt_id}. {services.store.count_prompts()} prompts in the store."
    return {tab.new_prompt: "", tab.prompt_status: message}


def import_prompts(
    services: Services,
    file: str | None,
    request: gr.Request,
    progress=gr.Progress(),  # noqa: B008 (gradio's way)
) -> str:
    guard.require(services, request, "import prompts")
    if file is None:
        raise gr.Error("Choose a JSONL, CSV, TXT or parquet file first.")
    try:
        added = services.loop.import_prompts(file, on_progress=lambda done, text: progress(done, desc=text))
    except (PromptFileError, ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    total = services.store.count_prompts()
    return f"Imported {added} new prompts from {Path(file).name}. {total} prompts in the store."


def apply_settings(
    services: Services, temperature: float, top_p: float, max_new_tokens: float, request: gr.Request
) -> str:
    guard.require(services, request, "change sampling settings")
    try:
        services.set_sampling(SamplingSettings(float(temperature), float(top_p), int(max_new_tokens)))
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return "Sampling settings applied; new pairs use them."


def queue_status(services: Services) -> str:
    """The sampler as labelers see it, refreshed by a timer: pairs ready, from which version, any error."""
    return views.queue_status(services.status())


# -- layout and wiring -------------------------------------------------------------------------------------
def build(services: Services, demo: gr.Blocks) -> LabelTab:
    """The tab's widgets and events, inside `with gr.Tab(...)`; `demo.load` shows the first pair."""
    pair, side = gr.State(None), gr.State("left")
    # With logins on, a vote carries the login's name and this box is not shown (nor read).
    labeler = gr.Textbox(
        label="Your name (labeler)", value="anonymous", max_lines=1, visible=not services.access.logins
    )
    mode = gr.Radio(list(MODES), value=MODES[0], label="Mode", elem_id="label-mode")
    prompt = gr.HTML(elem_id="prompt")
    with gr.Column(visible=True) as compare_view:
        with gr.Row():
            left = gr.Textbox(label="Left", lines=10, interactive=False)
            right = gr.Textbox(label="Right", lines=10, interactive=False)
        with gr.Row():
            votes = {c: gr.Button(f"{text} [{key}]", elem_id=f"vote-{c}") for c, text, key in CHOICE_BUTTONS}
        next_button = gr.Button("Next pair", variant="primary")
    with gr.Column(visible=False) as rate_view:
        single = gr.Textbox(label="Completion", lines=10, interactive=False)
        with gr.Row():
            rates = {r: gr.Button(f"{text} [{key}]", elem_id=f"rate-{r}") for r, text, key in RATE_BUTTONS}
    pair_status, vote_status, queue = gr.Markdown(), gr.Markdown(), gr.Markdown()
    gr.Markdown(f"{LABEL_USE} {KEYS_HELP}")
    sampling, apply_button = _sampling_settings(services)
    new_prompt, prompt_status, add_button, import_group = _prompts(services)
    tab = LabelTab(
        pair=pair,
        side=side,
        prompt=prompt,
        left=left,
        right=right,
        single=single,
        compare_view=compare_view,
        rate_view=rate_view,
        pair_status=pair_status,
        vote_status=vote_status,
        new_prompt=new_prompt,
        prompt_status=prompt_status,
        sampling=sampling,
        admin_only=(apply_button, import_group),
    )

    pair_outputs = [pair, prompt, left, right, pair_status]
    show_next = partial(next_pair, services, tab)
    next_button.click(show_next, None, pair_outputs, api_name="next_pair")
    demo.load(show_next, None, pair_outputs, api_name=False)
    for choice, button in votes.items():
        button.click(
            bind(vote, services, tab, choice),
            [pair, labeler],
            [vote_status, *pair_outputs],
            api_name=f"vote_{choice}",
            show_progress="hidden",
        )
    for rating, button in rates.items():
        button.click(
            bind(rate, services, tab, rating),
            [pair, side, labeler],
            [pair, side, prompt, single, pair_status, vote_status],
            api_name=f"rate_{rating}",
        )
    mode.change(
        partial(switch_mode, services, tab),
        [mode, pair],
        [compare_view, rate_view, side, single, left, right, pair_status],
        api_name=False,
    )
    add_button.click(partial(add_prompt, services, tab), new_prompt, [new_prompt, prompt_status], api_name="add_prompt")
    gr.Timer(2.0).tick(partial(queue_status, services), None, queue, api_name="queue_status", show_progress="hidden")
    return tab


def _sampling_settings(services: Services) -> tuple[tuple[gr.Slider, gr.Slider, gr.Slider], gr.Button]:
    """The sampling accordion: its sliders, which the Compare tab uses as well, and its Apply button."""
    with gr.Accordion("Sampling settings", open=False):
        temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature")
        top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top-p")
        max_new_tokens = gr.Slider(8, 1024, value=128, step=8, label="Max new tokens")
        settings_status = gr.Markdown()
        apply_button = gr.Button("Apply to new pairs (admin)")
        apply_button.click(
            bind(apply_settings, services),
            [temperature, top_p, max_new_tokens],
            settings_status,
            api_name="apply_settings",
        )
    return (temperature, top_p, max_new_tokens), apply_button


def _prompts(services: Services) -> tuple[gr.Textbox, gr.Markdown, gr.Button, gr.Group]:
    """The prompts accordion: type one (wired by `build`, whose handler clears the box), or import a file."""
    with gr.Accordion("Prompts", open=False):
        new_prompt = gr.Textbox(label="Add a prompt", lines=2)
        prompt_status = gr.Markdown()
        add_button = gr.Button("Add")
        with gr.Group() as import_group:
            upload = gr.File(label="Import JSONL / CSV / TXT / parquet (admin)", type="filepath")
            import_button = gr.Button("Import file")
        import_button.click(bind(import_prompts, services), upload, prompt_status, api_name="import_prompts")
    return new_prompt, prompt_status, add_button, import_group
