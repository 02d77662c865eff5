"""The Compare tab: one prompt, two versions (the base or finished rounds), the same seed and sampling settings.

API names: /compare (one at a time: it holds the model's worker) and /stored_prompts (the prompt list, read
when the tab opens, so prompts added since start are there).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr

from services import BASE_VERSION, SamplingSettings, Services, StoreError
from ui import guard
from ui.guard import bind

STORED_PROMPTS_SHOWN = 500


@dataclass(frozen=True)
class CompareTab:
    version_a: gr.Dropdown
    version_b: gr.Dropdown
    out_a: gr.Textbox
    out_b: gr.Textbox


# -- handlers --------------------------------------------------------------------------------------------------
def stored_prompts(services: Services, request: gr.Request) -> dict:
    """The stored prompts to pick from; the arena's held-out ones only for admins (labelers must not see the
    test set their votes are judged on)."""
    shown = services.labeling.prompts(limit=STORED_PROMPTS_SHOWN, held_out=guard.is_admin(services, request))
    return gr.update(choices=[p.text for p in shown])


def pick_prompt(text: str | None) -> str | None:
    """A stored prompt picked from the list goes into the prompt box, where it can be edited."""
    return text


def compare(
    services: Services,
    tab: CompareTab,
    prompt: str,
    version_a: str,
    version_b: str,
    seed: float,
    temperature: float,
    top_p: float,
    max_new_tokens: float,
) -> dict:
    try:
        settings = SamplingSettings(float(temperature), float(top_p), int(max_new_tokens), seed=int(seed))
        a, b = services.versions.compare(prompt, version_a, version_b, settings)
    except (ValueError, StoreError) as err:
        raise gr.Error(str(err)) from err
    return {tab.out_a: a, tab.out_b: b}


# -- layout and wiring -------------------------------------------------------------------------------------
def build(services: Services, tab_block: gr.Tab, settings: tuple[gr.Slider, gr.Slider, gr.Slider]) -> CompareTab:
    """The tab's widgets and events, inside `tab_block`; `settings` are the Label tab's sampling sliders
    (temperature, top-p, max new tokens)."""
    versions, serving = services.versions.list(), services.status().serving
    with gr.Row():
        version_a = gr.Dropdown(versions, value=BASE_VERSION, label="Version A", allow_custom_value=True)
        version_b = gr.Dropdown(versions, value=serving, label="Version B", allow_custom_value=True)
    prompts = [p.text for p in services.labeling.prompts(limit=STORED_PROMPTS_SHOWN)]
    stored = gr.Dropdown(prompts, value=None, label="Pick a stored prompt")
    prompt = gr.Textbox(label="Prompt", lines=2)
    seed = gr.Number(0, label="Seed", precision=0)
    gr.Markdown("Both versions sample with the same seed and the Label tab's sampling settings.")
    generate = gr.Button("Generate both", variant="primary")
    with gr.Row():
        out_a, out_b = gr.Textbox(label="A", lines=10), gr.Textbox(label="B", lines=10)
    tab = CompareTab(version_a=version_a, version_b=version_b, out_a=out_a, out_b=out_b)

    stored.change(pick_prompt, stored, prompt, api_name=False)
    tab_block.select(bind(stored_prompts, services), None, stored, api_name="stored_prompts")
    generate.click(
        partial(compare, services, tab),
        [prompt, version_a, version_b, seed, *settings],
        [out_a, out_b],
        api_name="compare",
        concurrency_limit=1,
    )
    return tab
