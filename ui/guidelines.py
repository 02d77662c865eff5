"""The labeling guidelines beside the pair: Markdown that admins write (every version kept in DuckDB) and
everyone reads. API names: /guidelines, /save_guidelines (admin).
"""

from __future__ import annotations

from functools import partial

import gradio as gr

from services import Services
from ui import guard, views
from ui.guard import bind

MAX_GUIDELINES = 20_000  # characters


def show(services: Services) -> str:
    return views.guidelines_html(services.labeling.guidelines())


def save(services: Services, text: str, request: gr.Request) -> tuple[str, str]:
    guard.require(services, request, "edit guidelines")
    text = (text or "").strip()
    if not text:
        raise gr.Error("The guidelines are empty: write what labelers should prefer, then save.")
    if len(text) > MAX_GUIDELINES:
        raise gr.Error(f"The guidelines are {len(text):,} characters; keep them under {MAX_GUIDELINES:,}.")
    version = services.labeling.set_guidelines(text, guard.user_of(request) or "admin")
    return show(services), f"Saved as version {version}; labelers see it when their page loads."


def current_text(services: Services) -> str:
    newest = services.labeling.guidelines()
    return newest[0] if newest else ""


def build(services: Services, demo: gr.Blocks) -> gr.Accordion:
    """The panel, inside the Label tab's side column; returns the admins' editor (hidden from labelers)."""
    gr.Markdown("**Guidelines**")
    shown = gr.HTML(elem_id="guidelines")
    with gr.Accordion("Edit guidelines (admin)", open=False) as editor:
        text = gr.Textbox(lines=8, label="Markdown", max_length=MAX_GUIDELINES)
        saved = gr.Markdown()
        gr.Button("Save guidelines").click(
            bind(save, services), text, [shown, saved], api_name="save_guidelines", concurrency_limit=1
        )
    demo.load(partial(show, services), None, shown, api_name="guidelines")
    demo.load(partial(current_text, services), None, text, api_name=False)
    return editor
