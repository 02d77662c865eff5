"""The Train tab: a DPO round's settings, generated from `DPOConfig`'s fields; live progress; serve; export.

A new `DPOConfig` field appears here by itself: `config_fields()` reads each field's type, default and help,
and `config_from_values()` turns widget values back into a config. API names: /start_round, /cancel_round,
/round_status, /serve, /export; /round_review (diagnostics over rounds, warnings, the round awaiting review)
and /set_review (review each round before it serves); /selection_report (pairs a selection strategy picked against
its random control, held out by the rounds).

/start_round takes every DPOConfig field by name, plus `processes`; any left out keeps its default:

    client.predict(beta=0.2, learning_rate=5e-3, epochs=3, loss_type="kto", processes=1, api_name="/start_round")

Positionally, the order is `config_fields()` (the common fields in the order shown, which is the order
/start_round always took, then the advanced ones in declaration order), then `processes`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from services import (
    COMPUTE_DTYPES,
    EXPORT_KINDS,
    LOSS_TYPES,
    QUANTIZATION,
    REFERENCES,
    DPOConfig,
    Services,
    StoreError,
    TrainingError,
)
from ui import guard, views
from ui.guard import bind

COMMON_FIELDS = (  # shown first, in this order; every other field goes in the "Advanced" accordion
    "beta",
    "learning_rate",
    "epochs",
    "batch_size",
    "loss_type",
    "lora_r",
    "lora_alpha",
    "max_length",
    "continue_from_serving",
    "reference",
    "label_smoothing",
    "target_modules",
    "arena_pairs",
)
FIELD_CHOICES = {"loss_type": LOSS_TYPES, "reference": REFERENCES, "quantization": QUANTIZATION}
FIELD_CHOICES |= {"compute_dtype": COMPUTE_DTYPES}
PROCESSES_HELP = "Processes that train the round: empty = the app's --round-processes, else one per GPU (1 on a CPU)."
PER_ROW = 4


@dataclass(frozen=True)
class ConfigField:
    """One DPOConfig field as the Train tab shows it. kind: int, float, bool, choice, text or names (a
    comma-separated list); optional: the field may be None, which an empty widget means."""

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple = ()
    optional: bool = False
    common: bool = False


def config_fields() -> list[ConfigField]:
    """DPOConfig's fields, the common ones first (COMMON_FIELDS order), then the rest in declaration order."""
    hints = typing.get_type_hints(DPOConfig)
    fields = []
    for f in dataclasses.fields(DPOConfig):
        hint, optional = _without_none(hints[f.name])
        kind = "choice" if f.name in FIELD_CHOICES else _kind(f.name, hint)
        help_text, choices = f.metadata.get("help", ""), FIELD_CHOICES.get(f.name, ())
        fields.append(ConfigField(f.name, kind, f.default, help_text, choices, optional, f.name in COMMON_FIELDS))
    # sorted() is stable: the advanced fields keep their declaration order
    return sorted(fields, key=lambda f: COMMON_FIELDS.index(f.name) if f.common else len(COMMON_FIELDS))


def _without_none(hint) -> tuple[Any, bool]:
    """(T, True) for `T | None`, else (hint, False)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return hint, False


def _kind(name: str, hint) -> str:
    if hint in (bool, int, float):
        return hint.__name__
    if typing.get_origin(hint) is tuple:
        return "names"
    if hint is str:
        return "text"
    raise TypeError(f"DPOConfig.{name} has type {hint}, which the Train tab has no widget for: add one in ui/train.py")


def config_from_values(values: dict[str, Any]) -> DPOConfig:
    """A DPOConfig from widget values by field name (absent: the default). Raises ValueError naming the field."""
    fields = {f.name: f for f in config_fields()}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"Unknown DPO config field(s) {unknown}; valid fields are {sorted(fields)}")
    return DPOConfig(**{name: _parse(fields[name], value) for name, value in values.items()})


def _parse(field: ConfigField, value: Any) -> Any:
    """One widget value as the field's type: an empty optional is None; names split on commas and spaces."""
    if field.optional and (value is None or (isinstance(value, str) and not value.strip())):
        return None
    if field.kind in ("int", "float"):
        return _number(field.name, value, whole=field.kind == "int")
    if field.kind == "bool":
        return bool(value)
    if field.kind == "names":
        return tuple(re.findall(r"[^,\s]+", value)) if isinstance(value, str) else tuple(value)
    return value


def _number(name: str, value: Any, whole: bool) -> int | float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not whole:
        return number
    if not number.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def parse_processes(value: Any) -> int | None:
    """The Processes box: empty is None (the app's default), else a whole number >= 1."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    processes = _number("processes", value, whole=True)
    if processes < 1:
        raise ValueError(f"processes must be at least 1 (or empty: one per GPU), got {value!r}")
    return processes


@dataclass(frozen=True)
class TrainTab:
    message: gr.Markdown
    progress: gr.Markdown
    plot: gr.LinePlot
    no_plot: gr.Markdown  # shown instead of an empty plot
    rounds: gr.Dataframe
    label_summary: gr.Markdown
    serving: gr.Markdown  # the header's serving line, kept current by round_status
    serve_choice: gr.Dropdown
    serve_button: gr.Button
    start_button: gr.Button
    export_file: gr.File
    export_message: gr.Markdown
    review: gr.Checkbox  # review each round before it serves
    diagnostics_plot: gr.LinePlot  # KL, distinct-2, repeated 4-grams, held-out scores over rounds
    length_plot: gr.LinePlot  # mean answer length over rounds (its own scale)
    no_diagnostics: gr.Markdown  # shown instead of empty plots
    warnings: gr.Markdown
    selection: gr.Markdown  # pairs a selection strategy picked against its random control, when one picked any
    review_panel: gr.Markdown  # the candidate against the serving version
    arena_button: gr.Button  # candidate vs serving in the Arena tab's pickers (wired by ui.build_demo)
    seen_candidate: gr.State  # the candidate this page last picked in the serve picker

    def review_outputs(self) -> list[gr.components.Component]:
        return [
            self.review, self.diagnostics_plot, self.length_plot, self.no_diagnostics, self.warnings,
            self.review_panel, self.arena_button, self.seen_candidate, self.serve_choice,
        ]  # fmt: skip


# -- handlers --------------------------------------------------------------------------------------------------
def start_round(services: Services, request: gr.Request, processes: Any = None, **values: Any) -> str:
    """Start a round with `values` (DPOConfig fields by name) on `processes` processes (None: the default)."""
    guard.require(services, request, "start a round")
    try:
        config = config_from_values(values)
        services.rounds.start(config, processes=parse_processes(processes))
    except (ValueError, TrainingError, StoreError) as err:
        raise gr.Error(str(err)) from err
    return "Round started."


def start_round_handler(services: Services, fields: list[ConfigField]) -> Callable:
    """`start_round` bound to `services`, with a signature naming every field and its default: gradio lists
    the endpoint's parameters from it, so gradio_client takes them as keywords and may leave any out (an
    optional field's empty widget included, which it would otherwise require)."""
    handler = bind(start_round, services)
    keyword = inspect.Parameter.KEYWORD_ONLY
    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)
    parameters = [inspect.Parameter(f.name, keyword, default=f.default) for f in fields]
    processes = inspect.Parameter("processes", keyword, default=None)
    handler.__signature__ = inspect.Signature([request, *parameters, processes])
    return handler


def cancel_round(services: Services, request: gr.Request) -> str:
    guard.require(services, request, "cancel a round")
    services.rounds.cancel()
    return "Cancelling… the round stops at its next micro-batch."


def round_status(services: Services, tab: TrainTab, request: gr.Request) -> dict:
    """The running round (state, bar, plot), the rounds table, the serving version and the label counts. Why a
    round failed (errors, log lines, paths) is for admins: labelers see that it failed."""
    status = services.rounds.status()
    table = views.round_rows(services.rounds.list())
    if not guard.is_admin(services, request):
        table = [row | {"error": "failed (an admin can see why)" if row["error"] else ""} for row in table]
        if status.state == "failed":
            status = dataclasses.replace(status, message="The last round did not finish; an admin can see why.")
    rows = views.plot_rows(status.history)
    rounds = pd.DataFrame(table, columns=list(views.ROUND_COLUMNS))
    return {
        tab.progress: views.round_progress(status),
        tab.plot: gr.update(value=pd.DataFrame(rows, columns=["step", "value", "metric"]), visible=bool(rows)),
        tab.no_plot: gr.update(visible=not rows),
        tab.rounds: rounds,
        tab.serving: views.serving_line(services.status().serving),
        tab.label_summary: views.label_summary(services.labeling.label_counts()),
    }


def round_review(services: Services, tab: TrainTab, seen: str | None, request: gr.Request) -> dict:
    """Diagnostics over rounds, the warnings about the newest round and, with review on, the round awaiting
    review against the serving version; a new candidate becomes the serve picker's choice (once, so a pick made
    meanwhile stays)."""
    rounds = services.rounds.list()
    history = views.diagnostics_history(rounds)
    shares, lengths = views.diagnostics_rows(history)
    candidate, serving = services.versions.candidate(), services.status().serving
    failures = services.versions.failed_checks(candidate)
    history = views.diagnostics_history(rounds, candidate)
    candidate = candidate if guard.is_admin(services, request) else None  # the review is the admins' to do
    panel = views.review_markdown(candidate, serving, history, failures) if candidate else ""
    columns = ["version", "value", "metric"]
    picked = candidate and candidate != seen
    return {
        tab.review: services.rounds.review(),
        tab.diagnostics_plot: gr.update(value=pd.DataFrame(shares, columns=columns), visible=bool(shares)),
        tab.length_plot: gr.update(value=pd.DataFrame(lengths, columns=columns), visible=bool(lengths)),
        tab.no_diagnostics: gr.update(visible=not (shares or lengths)),
        tab.warnings: views.warnings_markdown(history),
        tab.review_panel: gr.update(value=panel, visible=bool(candidate)),
        tab.arena_button: gr.update(visible=bool(candidate)),
        tab.seen_candidate: candidate,
        tab.serve_choice: gr.update(choices=services.versions.list(), value=candidate) if picked else gr.update(),
    }


def selection_report(services: Services) -> dict:
    """The held-out pairs a selection strategy picked against its random control; hidden while none did."""
    text = views.selection_markdown(services.rounds.selection_report())
    return gr.update(value=text, visible=bool(text))


def set_review(services: Services, on: bool, request: gr.Request) -> str:
    guard.require(services, request, "choose whether rounds are reviewed before serving")
    services.rounds.set_review(bool(on))
    if on:
        return "Each new round now waits for review: it serves only when you serve it."
    return "Each new round now serves as soon as it finishes."


def serve(services: Services, version: str, request: gr.Request) -> str:
    guard.require(services, request, "serve a version")
    try:
        failures = services.versions.serve(version, guard.user_of(request) or "admin (no logins)")
    except (ValueError, StoreError, OSError) as err:
        raise gr.Error(str(err)) from err
    served = f"Serving **{version}**; new pairs come from it."
    anyway = f" It failed the health check ({'; '.join(failures)}); serving it is recorded." if failures else ""
    return served + anyway


def export(services: Services, tab: TrainTab, fmt: str, kind: str, include_arena: bool, request: gr.Request) -> dict:
    guard.require(services, request, "export labels")
    try:
        path, count = services.exports.export(kind, fmt, include_arena=include_arena)
    except StoreError as err:
        raise gr.Error(str(err)) from err
    return {tab.export_file: str(path), tab.export_message: f"Exported {count} {EXPORT_KINDS[kind]} to {path}."}


# -- layout and wiring -------------------------------------------------------------------------------------
def config_widget(field: ConfigField) -> gr.components.Component:
    """The widget for one field: label = its name, info = its help; an optional number starts empty."""
    labels = {"label": field.name, "info": field.help}
    if field.kind == "choice":
        return gr.Dropdown(list(field.choices), value=field.default, **labels)
    if field.kind == "bool":
        return gr.Checkbox(field.default, **labels)
    if field.kind == "names":
        return gr.Textbox(", ".join(field.default), **labels)
    if field.kind == "text":
        return gr.Textbox(field.default, **labels)
    return gr.Number(field.default, precision=0 if field.kind == "int" else None, **labels)


def _config_widgets(fields: list[ConfigField]) -> dict[str, gr.components.Component]:
    """Every field's widget by name, PER_ROW to a row: the common ones shown, the rest in "Advanced"."""
    widgets = {}

    def rows(group: list[ConfigField]) -> None:
        for start in range(0, len(group), PER_ROW):
            with gr.Row():
                widgets.update({f.name: config_widget(f) for f in group[start : start + PER_ROW]})

    rows([f for f in fields if f.common])
    with gr.Accordion("Advanced", open=False):
        rows([f for f in fields if not f.common])
        widgets["processes"] = gr.Number(None, precision=0, label="processes", info=PROCESSES_HELP)
    return widgets


def _review_widgets(services: Services) -> dict:
    """The review setting, the diagnostics plots, the warnings and the review panel, as TrainTab fields."""
    review = gr.Checkbox(
        services.rounds.review(),
        label="Review each round before serving",
        info="On: a finished round waits as a candidate, with its diagnostics beside the serving version's, until "
        "you serve it. Off: each round serves as soon as it finishes.",
    )
    review_panel = gr.Markdown(visible=False, elem_id="round-review")
    arena_button = gr.Button("Compare in the Arena (candidate vs serving)", visible=False, size="sm")
    warnings = gr.Markdown(elem_id="round-warnings")
    selection = gr.Markdown(visible=False, elem_id="selection-report")
    with gr.Row():
        diagnostics_plot = gr.LinePlot(
            x="version", y="value", color="metric", title="Diagnostics over rounds", visible=False
        )
        length_plot = gr.LinePlot(x="version", y="value", color="metric", title="Answer length", visible=False)
    no_diagnostics = gr.Markdown(views.NO_DIAGNOSTICS)
    return {
        "review": review,
        "diagnostics_plot": diagnostics_plot,
        "length_plot": length_plot,
        "no_diagnostics": no_diagnostics,
        "warnings": warnings,
        "selection": selection,
        "review_panel": review_panel,
        "arena_button": arena_button,
        "seen_candidate": gr.State(None),
    }


def build(services: Services, demo: gr.Blocks, serving: gr.Markdown) -> TrainTab:
    """The tab's widgets and events, inside `with gr.Tab(...)`; round_status, on load and every second, also
    refreshes the header's `serving` line."""
    fields = config_fields()
    widgets = _config_widgets(fields)
    label_summary = gr.Markdown()
    with gr.Row():
        start_button = gr.Button("Start round", variant="primary")
        cancel_button = gr.Button("Cancel round", variant="stop")
    message, progress = gr.Markdown(), gr.Markdown()
    plot = gr.LinePlot(x="step", y="value", color="metric", title="Loss · reward margin · accuracy", visible=False)
    no_plot = gr.Markdown(views.NO_ROUND_YET, elem_id="no-round-yet")
    rounds = gr.Dataframe(label="Rounds", interactive=False)
    review_parts = _review_widgets(services)
    with gr.Row():
        serve_choice = gr.Dropdown(
            services.versions.list(),
            value=services.status().serving,
            label="Serve version (roll back or forward)",
            allow_custom_value=True,
        )
        serve_button = gr.Button("Serve this version")
    with gr.Row():
        kinds = [(description, kind) for kind, description in EXPORT_KINDS.items()]
        export_kind = gr.Radio(kinds, value="pairs", label="Export")
        fmt = gr.Radio(["jsonl", "parquet", "hf"], value="jsonl", label="Format")
        include_arena = gr.Checkbox(False, label="include arena votes", info="rows marked by source: label / arena")
        export_button = gr.Button("Export labels")
    export_file, export_message = gr.File(label="Export"), gr.Markdown()
    tab = TrainTab(
        message=message,
        progress=progress,
        plot=plot,
        no_plot=no_plot,
        rounds=rounds,
        label_summary=label_summary,
        serving=serving,
        serve_choice=serve_choice,
        serve_button=serve_button,
        start_button=start_button,
        export_file=export_file,
        export_message=export_message,
        **review_parts,
    )

    start = start_round_handler(services, fields)
    start_button.click(start, None, message, inputs_kwargs=widgets, api_name="start_round", concurrency_limit=1)
    cancel_button.click(bind(cancel_round, services), None, message, api_name="cancel_round", concurrency_limit=1)
    serve_button.click(bind(serve, services), serve_choice, message, api_name="serve", concurrency_limit=1)
    export_button.click(
        bind(export, services, tab), [fmt, export_kind, include_arena], [export_file, export_message], api_name="export"
    )
    tab.review.input(bind(set_review, services), tab.review, message, api_name="set_review", concurrency_limit=1)
    _refresh(services, demo, tab)
    return tab


def _refresh(services: Services, demo: gr.Blocks, tab: TrainTab) -> None:
    """On load and on timers: the round under review and the selection report every 5 s, the running round's
    status every second."""
    every_5s = gr.Timer(5.0)
    gr.on(
        [every_5s.tick, demo.load],
        bind(round_review, services, tab),
        tab.seen_candidate,
        tab.review_outputs(),
        api_name="round_review",
        show_progress="hidden",
    )
    gr.on(
        [every_5s.tick, demo.load],
        bind(selection_report, services),
        None,
        tab.selection,
        api_name="selection_report",
        show_progress="hidden",
    )
    gr.on(
        [gr.Timer(1.0).tick, demo.load],
        bind(round_status, services, tab),
        None,
        [tab.progress, tab.plot, tab.no_plot, tab.rounds, tab.serving, tab.label_summary],
        api_name="round_status",
        show_progress="hidden",
    )
