"""The Label tab: two completions from the serving policy, a vote (keys 1–5), or 👍 / 👎 on one in 'Rate one' mode;
undo (u), edit an answer into the chosen one (e), the guidelines beside the pair, counters. Now and then (the Audit
tab's share) a pair is a second look, someone else's judged pair shown again; its vote never trains.

Built by `ui.build_demo`; `build(services)` returns the tab's widgets as a `LabelTab`, which handlers receive
(bound with functools.partial) to key their returns by component. API names: /next_pair, /vote_<choice>, /undo,
/save_edit, /rate_<rating>, /counters, /apply_settings, /add_prompt, /import_prompts, /queue_status, and the
guidelines' /guidelines, /save_guidelines.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr

from services import LABEL_USE, Pair, PromptFileError, SamplingSettings, Services, StoreError, labeler_name
from ui import audit, guard, guidelines, views
from ui.guard import bind

CHOICE_BUTTONS = (  # (choice, label, key)
    ("left", "👈 Left is better", "1"),
    ("right", "Right is better 👉", "2"),
    ("tie", "🤝 Tie", "3"),
    ("both_bad", "👎 Both bad", "4"),
    ("skip", "Skip", "5/s"),
)
RATE_BUTTONS = (  # (rating, label, key) in "Rate one" mode; skip stores nothing
    ("up", "👍 Good", "1"),
    ("down", "👎 Bad", "2"),
    ("skip", "Skip", "5"),
)
MODES = ("Compare two", "Rate one")
KEYS_HELP = (
    "Keys — 1 left · 2 right · 3 tie · 4 both bad · 5 or s skip · u undo your last vote · e edit an answer "
    "(Ctrl+Enter saves, Esc cancels) · ? shows or hides this; rate one: 1 👍 · 2 👎 · 5 skip."
)


@dataclass(frozen=True)
class LabelTab:
    pair: gr.State  # the Pair on screen, as a dict (None after a vote, until the next pair arrives)
    side: gr.State  # 'Rate one' mode: which completion of it is on screen
    history: gr.State  # this session's votes and edits, newest last: [judgement ids, the pair as a dict]
    labeler: gr.Textbox  # the name typed without logins (the Arena tab's votes read it too)
    raw: gr.Checkbox  # completions as raw text instead of rendered Markdown
    prompt: gr.HTML
    left_view: gr.HTML  # the completions as shown (rendered, marked when cut)
    right_view: gr.HTML
    left: gr.Textbox  # the completions' text (hidden: for API clients and the edit box)
    right: gr.Textbox
    single: gr.Textbox
    compare_view: gr.Column
    rate_view: gr.Column
    edit_panel: gr.Column
    edit_source: gr.Radio
    edit_text: gr.Textbox
    pair_status: gr.Markdown
    vote_status: gr.Markdown
    new_prompt: gr.Textbox
    prompt_status: gr.Markdown
    sampling: tuple[gr.Slider, gr.Slider, gr.Slider]  # temperature, top-p, max new tokens; Compare uses them too
    admin_only: tuple[gr.components.Component, ...]  # hidden from labelers (the handlers refuse them anyway)

    def pair_outputs(self) -> list[gr.components.Component]:
        return [self.pair, self.prompt, self.left_view, self.right_view, self.left, self.right, self.pair_status]


# -- handlers --------------------------------------------------------------------------------------------------
def show_pair(services: Services, tab: LabelTab, pair: Pair, raw: bool = False) -> dict:
    shown = dataclasses.asdict(pair)
    return rerender(tab, shown, raw) | {
        tab.pair: shown,
        tab.prompt: views.prompt_html(pair.prompt),
        tab.left: pair.left,
        tab.right: pair.right,
        tab.pair_status: views.pair_status(pair.version, services.status()),
    }


def waiting(services: Services, tab: LabelTab, shown: dict | None) -> dict:
    """Between a vote and the next pair: the old pair stays (dimmed, so nothing jumps) and a line says what
    the screen waits for, when the queue is empty."""
    status = services.status()
    update = {tab.pair: None, tab.pair_status: views.waiting_line(status) if status.queued == 0 else ""}
    if shown:
        update[tab.prompt] = f'<div class="pending">{views.prompt_html(shown["prompt"])}</div>'
    return update


def next_pair_after(
    services: Services, tab: LabelTab, raw: bool, done: dict, name: str, vote: tuple[str, int]
) -> Iterator[dict]:
    """`done` (what was saved) at once, then `name`'s next pair, the same one for a repeated `vote`; if none can
    come, `done` and why not."""
    try:
        yield done | show_pair(services, tab, services.labeling.next_pair_after(vote, name), raw)
    except Exception as err:  # the vote is stored whatever happens to the next pair: say why there is none
        empty = {tab.prompt: "", tab.left_view: "", tab.right_view: "", tab.left: "", tab.right: ""}
        yield done | empty | {tab.pair: None, tab.pair_status: f"No next pair: {err}"}


def next_pair(
    services: Services, tab: LabelTab, raw: bool = False, typed: str = "", request: gr.Request = None
) -> Iterator[dict]:
    name = guard.labeler(services, request, typed)  # whose pair: a second look is someone else's
    status = services.status()
    if status.queued == 0:
        yield {tab.pair_status: views.waiting_line(status)}
    try:
        yield show_pair(services, tab, services.labeling.next_pair(name), raw)
    except Exception as err:  # sampling failed or there is nothing to label: say why on screen
        raise gr.Error(str(err)) from err


def vote(
    services: Services,
    tab: LabelTab,
    choice: str,
    pair_state: dict | None,
    history: list | None,
    typed: str,
    raw: bool,
    request: gr.Request,
) -> Iterator[dict]:
    """Store the vote and say so, then show the next pair: one request, so the next pair is on screen one
    round trip after the click (an API client's `predict` returns the vote's message with the next pair)."""
    name = guard.labeler(services, request, typed)
    if not pair_state:
        raise gr.Error("No pair on screen yet: wait for it (or press 'Next pair'), then vote.")
    try:
        judgement_id = services.labeling.vote(Pair(**pair_state), choice, name)
    except (ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    total = services.labeling.count_votes()
    second_look = pair_state.get("second_look_of") is not None
    message = audit.second_look_message if second_look else views.vote_message
    done = {
        tab.vote_status: message(judgement_id, choice, total),
        tab.history: [*(history or []), [[judgement_id], pair_state]],
    }
    yield done | waiting(services, tab, pair_state)
    kind = "second look" if second_look else "vote"
    yield from next_pair_after(services, tab, raw, done, name, (kind, judgement_id))


def undo(
    services: Services,
    tab: LabelTab,
    pair_state: dict | None,
    history: list | None,
    typed: str,
    raw: bool,
    request: gr.Request,
) -> dict:
    """Withdraw this session's last vote or edit (kept for the record, never trained on) and show its pair
    again; the pair that was on screen goes back to the queue."""
    name = guard.labeler(services, request, typed)
    if not history:
        raise gr.Error("Nothing to undo: you have not voted in this session yet.")
    judgement_ids, undone = history[-1]
    try:
        services.labeling.undo(judgement_ids, name, second_look=undone.get("second_look_of") is not None)
    except StoreError as err:
        raise gr.Error(str(err)) from err
    if pair_state:
        services.labeling.put_back(Pair(**pair_state))
    shown = show_pair(services, tab, Pair(**undone), raw)
    return shown | {tab.history: history[:-1], tab.vote_status: views.undo_message(judgement_ids)}


def open_edit(tab: LabelTab, pair_state: dict | None, source: str) -> dict:
    """Show the edit box with the `source` completion's text in it (empty for 'blank': write from scratch)."""
    if not pair_state:
        raise gr.Error("No pair on screen to edit yet: wait for it, then press e.")
    text = "" if source == "blank" else pair_state[source]
    return {tab.edit_panel: gr.update(visible=True), tab.edit_text: text}


def save_edit(
    services: Services,
    tab: LabelTab,
    pair_state: dict | None,
    history: list | None,
    source: str,
    text: str,
    typed: str,
    raw: bool,
    request: gr.Request,
) -> Iterator[dict]:
    """Store the edited answer as chosen over the original (or over both, written from scratch), then show
    the next pair."""
    name = guard.labeler(services, request, typed)
    if not pair_state:
        raise gr.Error("No pair on screen to edit: wait for the next pair.")
    try:
        judgement_ids = services.labeling.edit(Pair(**pair_state), source, text, name)
    except (ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    done = {
        tab.vote_status: views.edit_message(judgement_ids, source),
        tab.history: [*(history or []), [judgement_ids, pair_state]],
        tab.edit_panel: gr.update(visible=False),
        tab.edit_text: "",
    }
    yield done | waiting(services, tab, pair_state)
    yield from next_pair_after(services, tab, raw, done, name, ("edit", judgement_ids[0]))


def rerender(tab: LabelTab, pair_state: dict | None, raw: bool) -> dict:
    """The completions on screen, rendered or raw."""
    if not pair_state:
        return {}
    pair = Pair(**pair_state)
    return {
        tab.left_view: views.completion_html(pair.left, pair.left_cut, raw),
        tab.right_view: views.completion_html(pair.right, pair.right_cut, raw),
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


def next_single(services: Services, tab: LabelTab, pair_state: dict | None, side: str | None) -> dict:
    """'Rate one' mode: the other completion of the pair on screen, else the left one of a new pair."""
    try:
        if pair_state and side == "left":
            return show_single(services, tab, Pair(**pair_state), "right")
        return show_single(services, tab, services.labeling.next_pair(), "left")
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
        rating_id = services.labeling.rate(Pair(**pair_state), side, rating, name)
    except (ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    message = views.rating_message(rating_id, rating, side, services.labeling.label_counts())
    return next_single(services, tab, pair_state, side) | {tab.vote_status: message}


def switch_mode(services: Services, tab: LabelTab, mode: str, pair_state: dict | None, raw: bool) -> dict:
    """Show the widgets of `mode` with the pair on screen ('Rate one' starts at its left completion)."""
    rating = mode == MODES[1]
    shown = {tab.compare_view: gr.update(visible=not rating), tab.rate_view: gr.update(visible=rating)}
    shown[tab.side] = "left"
    if not pair_state:
        return shown | {tab.single: "", tab.left: "", tab.right: "", tab.pair_status: ""}
    pair, status = Pair(**pair_state), services.status()
    text = views.single_status(pair.version, "left", status) if rating else views.pair_status(pair.version, status)
    return shown | rerender(tab, pair_state, raw) | {tab.single: pair.left, tab.pair_status: text}


def counters(services: Services, typed: str, request: gr.Request) -> str:
    """Labeled today, by me, since the last round, pairs ready (refreshed by a timer)."""
    name = guard.user_of(request) if services.team.logins else labeler_name(typed)
    numbers = services.labeling.counters(name)
    return views.counters_line(numbers, services.status(), services.labeling.count_unjudged())


def add_prompt(services: Services, tab: LabelTab, text: str) -> dict:
    try:
        prompt_id = services.labeling.add_prompt(text)
    except (ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    message = f"Added prompt #{prompt_id}. {services.labeling.count_prompts()} prompts in the store."
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
        added = services.labeling.import_prompts(file, on_progress=lambda done, text: progress(done, desc=text))
    except (PromptFileError, ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    total = services.labeling.count_prompts()
    return f"Imported {added} new prompts from {Path(file).name}. {total} prompts in the store."


def apply_settings(
    services: Services, temperature: float, top_p: float, max_new_tokens: float, request: gr.Request
) -> str:
    guard.require(services, request, "change sampling settings")
    try:
        services.labeling.set_sampling(SamplingSettings(float(temperature), float(top_p), int(max_new_tokens)))
    except ValueError as err:
        raise gr.Error(str(err)) from err
    return "Sampling settings applied; new pairs use them."


def current_sampling(services: Services) -> tuple[float, float, int]:
    """The sampling settings new pairs use now (stored: they survive a restart), for the sliders on page load."""
    settings = services.labeling.sampling()
    return settings.temperature, settings.top_p, settings.max_new_tokens


def queue_status(services: Services) -> str:
    """The sampler as labelers see it, refreshed by a timer: pairs ready, from which version, any error."""
    return views.queue_status(services.status())


# -- layout and wiring -------------------------------------------------------------------------------------
def build(services: Services, demo: gr.Blocks) -> LabelTab:
    """The tab's widgets and events, inside `with gr.Tab(...)`; `demo.load` shows the first pair."""
    pair, side, history = gr.State(None), gr.State("left"), gr.State([])
    # With logins on, a vote carries the login's name and this box is not shown (nor read).
    labeler = gr.Textbox(label="Your name (labeler)", value="anonymous", max_lines=1, visible=not services.team.logins)
    counters_line = gr.Markdown(elem_id="counters")
    with gr.Row(elem_id="label-layout"):
        with gr.Column(scale=4):
            with gr.Row():
                mode = gr.Radio(list(MODES), value=MODES[0], label="Mode", elem_id="label-mode", scale=3)
                raw = gr.Checkbox(False, label="Raw text", elem_id="raw-text", scale=1)
            prompt = gr.HTML(elem_id="prompt")
            with gr.Column(visible=True) as compare_view:
                with gr.Row(elem_id="pair-row"):
                    with gr.Column(min_width=280):
                        gr.Markdown("**Left** `1`")
                        left_view = gr.HTML(elem_id="left-view")
                    with gr.Column(min_width=280):
                        gr.Markdown("**Right** `2`")
                        right_view = gr.HTML(elem_id="right-view")
                left = gr.Textbox(visible=False)
                right = gr.Textbox(visible=False)
                with gr.Row(elem_id="vote-bar"):
                    votes = {
                        c: gr.Button(f"{text} [{key}]", elem_id=f"vote-{c}", min_width=90)
                        for c, text, key in CHOICE_BUTTONS
                    }
                with gr.Row():
                    undo_button = gr.Button("↩ Undo [u]", elem_id="undo", size="sm")
                    edit_button = gr.Button("✏️ Edit [e]", elem_id="edit-open", size="sm")
                    next_button = gr.Button("Next pair", size="sm")
                edit_panel, edit_source, edit_text, save_edit_button, cancel_edit = _edit_panel()
            with gr.Column(visible=False) as rate_view:
                single = gr.Textbox(label="Completion", lines=10, interactive=False)
                with gr.Row():
                    rates = {r: gr.Button(f"{text} [{key}]", elem_id=f"rate-{r}") for r, text, key in RATE_BUTTONS}
            pair_status, vote_status = gr.Markdown(elem_id="pair-status"), gr.Markdown(elem_id="vote-status")
        with gr.Column(scale=1, min_width=240, elem_id="guidelines-column"):
            guidelines_edit = guidelines.build(services, demo)
    gr.Markdown(f"{LABEL_USE} {KEYS_HELP}", elem_id="keys-help")
    queue = gr.Markdown()
    sampling, apply_button = _sampling_settings(services)
    demo.load(partial(current_sampling, services), None, list(sampling), api_name=False)  # kept across restarts
    new_prompt, prompt_status, add_button, import_group = _prompts(services)
    tab = LabelTab(
        pair=pair,
        side=side,
        history=history,
        labeler=labeler,
        raw=raw,
        prompt=prompt,
        left_view=left_view,
        right_view=right_view,
        left=left,
        right=right,
        single=single,
        compare_view=compare_view,
        rate_view=rate_view,
        edit_panel=edit_panel,
        edit_source=edit_source,
        edit_text=edit_text,
        pair_status=pair_status,
        vote_status=vote_status,
        new_prompt=new_prompt,
        prompt_status=prompt_status,
        sampling=sampling,
        admin_only=(apply_button, import_group, guidelines_edit),
    )

    controls = _Controls(
        next_button=next_button,
        votes=votes,
        undo=undo_button,
        edit=edit_button,
        save_edit=save_edit_button,
        cancel_edit=cancel_edit,
        rates=rates,
        mode=mode,
        add_prompt=add_button,
        queue=queue,
        counters=counters_line,
    )
    _wire_pair_events(services, demo, tab, controls)
    _wire_modes_and_timers(services, demo, tab, controls)
    return tab


@dataclass(frozen=True)
class _Controls:
    """The tab's buttons and read-only views that only its own events use."""

    next_button: gr.Button
    votes: dict[str, gr.Button]
    undo: gr.Button
    edit: gr.Button
    save_edit: gr.Button
    cancel_edit: gr.Button
    rates: dict[str, gr.Button]
    mode: gr.Radio
    add_prompt: gr.Button
    queue: gr.Markdown
    counters: gr.Markdown


def _wire_pair_events(services: Services, demo: gr.Blocks, tab: LabelTab, controls: _Controls) -> None:
    """Next pair, votes, undo and edit."""
    pair_outputs = tab.pair_outputs()
    show_next = bind(next_pair, services, tab)
    # Our own waiting line, not gradio's timer. Every press runs ("multiple"): one that comes as the next pair
    # arrives, while the last vote's event finishes, votes on that pair instead of being dropped; keys.js keeps
    # a second press from going out before the first vote is acknowledged, and the store judges a pair once.
    hidden = {"show_progress": "hidden", "trigger_mode": "multiple"}
    controls.next_button.click(show_next, [tab.raw, tab.labeler], pair_outputs, api_name="next_pair", **hidden)
    demo.load(show_next, [tab.raw, tab.labeler], pair_outputs, api_name=False, **hidden)
    voted = [tab.pair, tab.history, tab.labeler, tab.raw]
    labeled = [tab.vote_status, tab.history, *pair_outputs]
    for choice, button in controls.votes.items():
        button.click(bind(vote, services, tab, choice), voted, labeled, api_name=f"vote_{choice}", **hidden)
    controls.undo.click(bind(undo, services, tab), voted, labeled, api_name="undo", **hidden)
    opened = [tab.edit_panel, tab.edit_text]
    controls.edit.click(partial(open_edit, tab), [tab.pair, tab.edit_source], opened, api_name=False)
    tab.edit_source.change(partial(open_edit, tab), [tab.pair, tab.edit_source], opened, api_name=False)
    controls.save_edit.click(
        bind(save_edit, services, tab),
        [tab.pair, tab.history, tab.edit_source, tab.edit_text, tab.labeler, tab.raw],
        [*labeled, *opened],
        api_name="save_edit",
        **hidden,
    )
    controls.cancel_edit.click(lambda: gr.update(visible=False), None, tab.edit_panel, api_name=False)
    tab.raw.change(partial(rerender, tab), [tab.pair, tab.raw], [tab.left_view, tab.right_view], api_name=False)


def _wire_modes_and_timers(services: Services, demo: gr.Blocks, tab: LabelTab, controls: _Controls) -> None:
    """Rate-one mode, adding a prompt, and the queue and counters lines that refresh every 2 s."""
    for rating, button in controls.rates.items():
        button.click(
            bind(rate, services, tab, rating),
            [tab.pair, tab.side, tab.labeler],
            [tab.pair, tab.side, tab.prompt, tab.single, tab.pair_status, tab.vote_status],
            api_name=f"rate_{rating}",
        )
    controls.mode.change(
        partial(switch_mode, services, tab),
        [controls.mode, tab.pair, tab.raw],
        [tab.compare_view, tab.rate_view, tab.side, tab.single, tab.left, tab.right, tab.left_view, tab.right_view]
        + [tab.pair_status],
        api_name=False,
    )
    added = [tab.new_prompt, tab.prompt_status]
    controls.add_prompt.click(partial(add_prompt, services, tab), tab.new_prompt, added, api_name="add_prompt")
    queue_line = partial(queue_status, services)
    gr.Timer(2.0).tick(queue_line, None, controls.queue, api_name="queue_status", show_progress="hidden")
    gr.on(
        [gr.Timer(2.0).tick, demo.load],
        bind(counters, services),
        tab.labeler,
        controls.counters,
        api_name="counters",
        show_progress="hidden",
    )


def _edit_panel() -> tuple[gr.Column, gr.Radio, gr.Textbox, gr.Button, gr.Button]:
    """The edit box (hidden until e or ✏️): start from either completion or from nothing."""
    with gr.Column(visible=False, elem_id="edit-panel") as panel:
        sources = [("Edit the left one", "left"), ("Edit the right one", "right"), ("Write from scratch", "blank")]
        source = gr.Radio(sources, value="left", label="Your better answer, saved as chosen over the original")
        text = gr.Textbox(lines=8, label="Answer", elem_id="edit-text")
        with gr.Row():
            save = gr.Button("Save as chosen [Ctrl+Enter]", variant="primary", elem_id="edit-save")
            cancel = gr.Button("Cancel [Esc]", elem_id="edit-cancel")
    return panel, source, text, save, cancel


def _sampling_settings(services: Services) -> tuple[tuple[gr.Slider, gr.Slider, gr.Slider], gr.Button]:
    """The sampling accordion: its sliders, which the Compare tab uses as well, and its Apply button."""
    with gr.Accordion("Sampling settings", open=False):
        now = current_sampling(services)  # as restored at start; each page load shows them anew
        temperature = gr.Slider(0.05, 2.0, value=now[0], step=0.05, label="Temperature")
        top_p = gr.Slider(0.05, 1.0, value=now[1], step=0.05, label="Top-p")
        max_new_tokens = gr.Slider(8, 1024, value=now[2], step=8, label="Max new tokens")
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
