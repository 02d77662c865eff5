"""prefloop's web app: label pairs from the current policy, train DPO rounds, compare versions.

    python app.py                       # bundled SmolLM2-135M-Instruct, data in ./data, rounds in ./runs
    python app.py --model path/or/hub-id --db data/other.duckdb --port 7860

This file is the only one that imports gradio: handlers translate between widgets and the domain objects
built in `build_services` (store, policy server, pair sampler, round runner).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from labeling.loop import Loop
from labeling.prompts import PromptFileError, starter_prompts
from labeling.sampler import Pair, PairSampler
from models import ModelLoadError, default_device, resolve_model, resolve_quantization
from serving import SERVER_BACKENDS, SamplingSettings, open_policy_server
from storage import BASE_VERSION, Store, StoreError, round_version
from training.cli import add_common_arguments
from training.config import LOSS_TYPES, REFERENCES, DPOConfig
from training.rounds import RoundRunner
from training.trainer import TrainingError

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
KEYS_JS = """
<script>
document.addEventListener('keydown', (e) => {
  const tag = (e.target.tagName || '').toLowerCase();
  const typing = tag === 'textarea' || (tag === 'input' && !['radio', 'checkbox', 'button'].includes(e.target.type));
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  const shown = (id) => { const el = document.getElementById(id); return el && el.offsetParent !== null ? el : null; };
  const votes = {'1': 'vote-left', '2': 'vote-right', '3': 'vote-tie', '4': 'vote-both_bad', '5': 'vote-skip'};
  const rates = {'1': 'rate-up', '2': 'rate-down', '5': 'rate-skip'};
  const el = (rates[e.key] && shown(rates[e.key])) || (votes[e.key] && shown(votes[e.key]));
  if (el) { el.click(); e.preventDefault(); }
});
</script>
"""
LABEL_USE = (
    "**Which loss each label feeds:** *left* / *right* → a DPO pair (chosen / rejected) for every loss; the "
    "*kto* loss reads it as one 👍 and one 👎. *Both bad* → two 👎, *kto* only. *Rate one* mode's 👍 / 👎 on a "
    "single completion → *kto* only. *Tie* is stored but trains nothing; *skip* records that the pair was seen."
)


EXPORT_KINDS = {  # kind: its rows, as a message and the export radio say
    "pairs": "pairs (prompt / chosen / rejected, for DPO)",
    "unpaired": "unpaired rows (prompt / completion / 👍-👎 label, for KTO)",
}


@dataclass
class Services:
    store: Store
    loop: Loop
    runner: RoundRunner
    model: str
    device: str
    exports_dir: Path


def build_services(args: argparse.Namespace) -> Services:
    """Open the store, load the serving model, start the sampler; raises with a clear message on bad input."""
    store = Store(args.db)
    store.rounds.mark_interrupted()
    if store.count_prompts() == 0:
        store.add_prompts(starter_prompts(), source="starter")
    model = resolve_model(args.model, Path(args.model_cache))
    device = args.device or default_device()
    quantization = resolve_quantization(args.quantization, device)
    vllm_options = {"max_lora_rank": args.vllm_max_lora_rank, "gpu_memory_utilization": args.vllm_gpu_memory}
    server = open_policy_server(model, device, quantization, args.backend, 2 * args.sample_batch, vllm_options)
    sampler = PairSampler(
        store, server, depth=args.queue_depth, batch_prompts=args.sample_batch, keep_stale=args.keep_stale_pairs
    )
    loop = Loop(store, server, sampler)
    loop.restore_serving()
    runner = RoundRunner(store, model, Path(args.runs), on_done=lambda r: loop.serve(r.version), device=device)
    sampler.start()
    return Services(store, loop, runner, model, device, Path(args.exports))


# -- handlers: small adapters between widgets and the domain ------------------------------------------------
def _pair_view(pair: Pair, services: Services) -> tuple:
    sampler = services.loop.sampler
    status = f"Pair from **{pair.version}** · {sampler.queued()} ready in the queue"
    if sampler.last_error:
        status += f" · background sampling: {sampler.last_error}"
    return dataclasses.asdict(pair), f"**Prompt:** {pair.prompt}", pair.left, pair.right, status


def _single_view(pair: Pair, side: str, services: Services) -> tuple:
    """'Rate one' mode: one completion of `pair` (its left, then its right) on screen."""
    queued = services.loop.sampler.queued()
    number = 1 if side == "left" else 2
    status = f"Completion {number} of 2 from **{pair.version}** · {queued} pairs ready in the queue"
    text = pair.left if side == "left" else pair.right
    return dataclasses.asdict(pair), side, f"**Prompt:** {pair.prompt}", text, status


def _label_summary(counts: dict) -> str:
    return (
        f"**Labels in the store:** {counts['pairs']} pairs (every loss) · {counts['both_bad']} both bad (kto) · "
        f"{counts['up']} 👍 / {counts['down']} 👎 single ratings (kto) · {counts['tie']} ties (not trained)"
    )


def _before_after(metrics: dict, key: str, reference: str = "base") -> str:
    """'0.50 → 1.00' for a held-out metric, or '' when the round held nothing out. With the previous policy as
    reference, the policy before training is the reference itself, so 'before' is 0 by definition: '–'."""
    before, after = metrics.get("heldout_before"), metrics.get("heldout_after")
    if not (before and after):
        return ""
    return f"{'–' if reference == 'previous' else f'{before[key]:.2f}'} → {after[key]:.2f}"


def _round_row(r) -> dict:
    loss = (r.metrics.get("train") or {}).get("loss")
    return {
        "version": r.version,
        "status": r.status,
        "parent": round_version(r.parent_round) if r.parent_round else BASE_VERSION,
        "pairs": r.n_pairs,
        "ratings": r.n_ratings,
        "held-out accuracy": _before_after(r.metrics, "accuracy", r.config.get("reference", "base")),
        "held-out margin": _before_after(r.metrics, "margin", r.config.get("reference", "base")),
        "final loss": "" if loss is None else f"{loss:.4f}",
        "seconds": r.metrics.get("seconds"),
        "started": r.started_at.strftime("%Y-%m-%d %H:%M"),
        "error": r.error or "",
    }


def make_handlers(services: Services) -> dict:
    loop, store, runner = services.loop, services.store, services.runner

    def next_pair():
        try:
            return _pair_view(loop.next_pair(), services)
        except Exception as err:
            raise gr.Error(str(err)) from err

    def vote(choice: str):
        def handler(pair_state: dict | None, labeler: str):
            if not pair_state:
                raise gr.Error("No pair on screen: press 'Next pair' first.")
            try:
                judgement_id = loop.vote(Pair(**pair_state), choice, labeler)
            except (ValueError, StoreError) as err:
                raise gr.Error(str(err)) from err
            return None, f"Saved vote #{judgement_id} ({choice}). Total votes: {store.count_judgements()}."

        return handler

    def next_single(pair_state: dict | None, side: str | None):
        """'Rate one' mode: the other completion of the pair on screen, else the left one of a new pair."""
        try:
            if pair_state and side == "left":
                return _single_view(Pair(**pair_state), "right", services)
            return _single_view(loop.next_pair(), "left", services)
        except Exception as err:
            raise gr.Error(str(err)) from err

    def rate(rating: str):
        def handler(pair_state: dict | None, side: str | None, labeler: str):
            if rating == "skip":
                return (*next_single(pair_state, side), "Skipped; nothing was stored.")
            if not pair_state or side not in ("left", "right"):
                raise gr.Error("No completion on screen: press Skip [5] to fetch one.")
            try:
                rating_id = loop.rate(Pair(**pair_state), side, rating, labeler)
            except (ValueError, StoreError) as err:
                raise gr.Error(str(err)) from err
            counts = loop.label_counts()
            message = (
                f"Saved {'👍' if rating == 'up' else '👎'} #{rating_id} on completion {1 if side == 'left' else 2}. "
                f"Single ratings: {counts['up']} 👍 / {counts['down']} 👎 (they train the kto loss)."
            )
            return (*next_single(pair_state, side), message)

        return handler

    def switch_mode(mode: str, pair_state: dict | None):
        """Show the widgets of `mode` with the pair on screen ('Rate one' starts at its left completion)."""
        rating = mode == MODES[1]
        views = gr.update(visible=not rating), gr.update(visible=rating), "left"
        if not pair_state:
            return (*views, "", "", "", "")
        pair = Pair(**pair_state)
        status = _single_view(pair, "left", services)[-1] if rating else _pair_view(pair, services)[-1]
        return (*views, pair.left, pair.left, pair.right, status)

    def add_prompt(text: str):
        try:
            prompt_id = loop.add_prompt(text)
        except ValueError as err:
            raise gr.Error(str(err)) from err
        return "", f"Added prompt #{prompt_id}. {store.count_prompts()} prompts in the store."

    def import_prompts(file):
        if file is None:
            raise gr.Error("Choose a JSONL, CSV, TXT or parquet file first.")
        try:
            added = loop.import_prompts(file)
        except (PromptFileError, ValueError, StoreError) as err:
            raise gr.Error(str(err)) from err
        return f"Imported {added} new prompts from {Path(file).name}. {store.count_prompts()} prompts in the store."

    def apply_settings(temperature, top_p, max_new_tokens):
        try:
            loop.sampler.set_settings(SamplingSettings(float(temperature), float(top_p), int(max_new_tokens)))
        except ValueError as err:
            raise gr.Error(str(err)) from err
        return "Sampling settings applied; new pairs use them."

    def start_round(
        beta,
        lr,
        epochs,
        batch_size,
        loss_type,
        lora_r,
        lora_alpha,
        max_length,
        continue_serving,
        reference,
        label_smoothing,
        target_modules: str | None = None,
    ):
        layers = {} if target_modules is None else {"target_modules": tuple(re.findall(r"[^,\s]+", target_modules))}
        try:
            config = DPOConfig(
                beta=float(beta),
                learning_rate=float(lr),
                epochs=int(epochs),
                batch_size=int(batch_size),
                loss_type=loss_type,
                lora_r=int(lora_r),
                lora_alpha=int(lora_alpha),
                max_length=int(max_length),
                continue_from_serving=bool(continue_serving),
                reference=reference,
                label_smoothing=float(label_smoothing),
                **layers,
            )
            runner.start(config)
        except (ValueError, TrainingError, StoreError) as err:
            raise gr.Error(str(err)) from err
        return "Round started."

    def cancel_round():
        runner.cancel()
        return "Cancelling… the round stops at its next micro-batch."

    def round_status():
        status = runner.status()
        rows = [
            {"step": s["step"], "value": s[k], "metric": k}
            for s in status["history"]
            for k in ("loss", "margin", "accuracy")
        ]
        plot = pd.DataFrame(rows or [{"step": 0, "value": 0.0, "metric": "loss"}])
        history = status["history"]
        progress = f"**{status['state']}** · {status['message']}"
        if history:
            last = history[-1]
            done = last["step"] / last["total_steps"]
            progress += (
                f"\n\n`{'█' * round(20 * done)}{'░' * (20 - round(20 * done))}` {done:.0%} · {last['seconds']:.0f}s"
            )
        return progress, plot, rounds_table(), f"Serving **{loop.server.version}**", _label_summary(loop.label_counts())

    def rounds_table():
        columns = [
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
        ]
        return pd.DataFrame([_round_row(r) for r in store.rounds.list()], columns=columns)

    def versions():
        choices = loop.versions()
        return gr.update(choices=choices), gr.update(choices=choices), gr.update(choices=choices)

    def versions_on_load():
        choices = loop.versions()
        serving = loop.server.version
        return (
            gr.update(choices=choices, value=serving),
            gr.update(choices=choices, value="base"),
            gr.update(choices=choices, value=serving),
        )

    def queue_status():
        """The sampler as labelers see it, refreshed by a timer: pairs ready, from which version, any error."""
        sampler = loop.sampler
        text = f"Queue: {sampler.queued()} of {sampler.depth} pairs ready · serving **{loop.server.version}**"
        return text + (f" · background sampling: {sampler.last_error}" if sampler.last_error else "")

    def stored_prompts():
        """The Compare tab's prompt list, read when the tab opens, so prompts added since start are there."""
        return gr.update(choices=[p.text for p in store.list_prompts(limit=500)])

    def serve(version: str):
        try:
            loop.serve(version)
        except (ValueError, StoreError, OSError) as err:
            raise gr.Error(str(err)) from err
        return f"Serving **{version}**; new pairs come from it."

    def compare(prompt, version_a, version_b, seed, temperature, top_p, max_new_tokens):
        try:
            settings = SamplingSettings(float(temperature), float(top_p), int(max_new_tokens), seed=int(seed))
            return loop.compare(prompt, version_a, version_b, settings)
        except (ValueError, StoreError) as err:
            raise gr.Error(str(err)) from err

    def export(fmt: str, kind: str = "pairs"):
        if kind not in EXPORT_KINDS:
            raise gr.Error(f"Unknown export kind {kind!r}: pick one of {', '.join(EXPORT_KINDS)}.")
        services.exports_dir.mkdir(parents=True, exist_ok=True)
        stem = services.exports_dir / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        target = stem.with_suffix({"jsonl": ".jsonl", "parquet": ".parquet", "hf": ""}.get(fmt, ""))
        write = store.export_pairs if kind == "pairs" else store.export_unpaired
        try:
            count = write(target, fmt)
        except StoreError as err:
            raise gr.Error(str(err)) from err
        if fmt == "hf":  # a datasets folder: offer it zipped
            target = Path(shutil.make_archive(str(stem), "zip", root_dir=target))
        return str(target), f"Exported {count} {EXPORT_KINDS[kind]} to {target}."

    return {k: v for k, v in locals().items() if callable(v) and not k.startswith("_")}


def build_demo(services: Services) -> gr.Blocks:
    h = make_handlers(services)
    mode = "QLoRA: 4-bit NF4 base + LoRA" if resolve_quantization("auto", services.device) == "nf4" else "plain LoRA"
    with gr.Blocks(title="prefloop") as demo:
        gr.Markdown(f"# prefloop\nModel `{services.model}` on **{services.device}** · training: **{mode}**")
        serving = gr.Markdown(f"Serving **{services.loop.server.version}**")
        with gr.Tab("Label"):
            pair_state = gr.State(None)
            labeler = gr.Textbox(label="Your name (labeler)", value="anonymous", max_lines=1)
            mode = gr.Radio(list(MODES), value=MODES[0], label="Mode", elem_id="label-mode")
            side_state = gr.State("left")
            prompt_md = gr.Markdown()
            with gr.Column(visible=True) as compare_view:
                with gr.Row():
                    left = gr.Textbox(label="Left", lines=10, interactive=False)
                    right = gr.Textbox(label="Right", lines=10, interactive=False)
                with gr.Row():
                    buttons = {
                        c: gr.Button(f"{label} [{key}]", elem_id=f"vote-{c}") for c, label, key in CHOICE_BUTTONS
                    }
                next_btn = gr.Button("Next pair", variant="primary")
            with gr.Column(visible=False) as rate_view:
                single = gr.Textbox(label="Completion", lines=10, interactive=False)
                with gr.Row():
                    rate_buttons = {
                        r: gr.Button(f"{label} [{key}]", elem_id=f"rate-{r}") for r, label, key in RATE_BUTTONS
                    }
            pair_status, vote_status, queue_md = gr.Markdown(), gr.Markdown(), gr.Markdown()
            gr.Markdown(f"{LABEL_USE} {KEYS_HELP}")
            gr.Timer(2.0).tick(h["queue_status"], None, queue_md, api_name="queue_status", show_progress="hidden")
            pair_outputs = [pair_state, prompt_md, left, right, pair_status]
            single_outputs = [pair_state, side_state, prompt_md, single, pair_status]
            for choice, button in buttons.items():
                button.click(
                    h["vote"](choice), [pair_state, labeler], [pair_state, vote_status], api_name=f"vote_{choice}"
                ).then(h["next_pair"], None, pair_outputs, api_name=False)
            for rating, button in rate_buttons.items():
                button.click(
                    h["rate"](rating),
                    [pair_state, side_state, labeler],
                    [*single_outputs, vote_status],
                    api_name=f"rate_{rating}",
                )
            next_btn.click(h["next_pair"], None, pair_outputs, api_name="next_pair")
            mode.change(
                h["switch_mode"],
                [mode, pair_state],
                [compare_view, rate_view, side_state, single, left, right, pair_status],
                api_name=False,
            )
            demo.load(h["next_pair"], None, pair_outputs, api_name=False)
            with gr.Accordion("Sampling settings", open=False):
                temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature")
                top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top-p")
                max_new = gr.Slider(8, 1024, value=128, step=8, label="Max new tokens")
                settings_status = gr.Markdown()
                gr.Button("Apply").click(
                    h["apply_settings"], [temperature, top_p, max_new], settings_status, api_name="apply_settings"
                )
            with gr.Accordion("Prompts", open=False):
                new_prompt = gr.Textbox(label="Add a prompt", lines=2)
                prompt_status = gr.Markdown()
                gr.Button("Add").click(h["add_prompt"], new_prompt, [new_prompt, prompt_status], api_name="add_prompt")
                upload = gr.File(label="Import JSONL / CSV / TXT / parquet", type="filepath")
                gr.Button("Import file").click(h["import_prompts"], upload, prompt_status, api_name="import_prompts")
        with gr.Tab("Train"):
            defaults = DPOConfig()
            with gr.Row():
                beta = gr.Number(defaults.beta, label="β (beta)")
                lr = gr.Number(defaults.learning_rate, label="Learning rate")
                epochs = gr.Number(defaults.epochs, label="Epochs", precision=0)
                batch = gr.Number(defaults.batch_size, label="Batch size (pairs)", precision=0)
            with gr.Row():
                loss_type = gr.Dropdown(list(LOSS_TYPES), value=defaults.loss_type, label="Loss")
                lora_r = gr.Number(defaults.lora_r, label="LoRA rank", precision=0)
                lora_alpha = gr.Number(defaults.lora_alpha, label="LoRA alpha", precision=0)
                max_length = gr.Number(defaults.max_length, label="Max length (tokens)", precision=0)
            with gr.Row():
                reference = gr.Dropdown(
                    list(REFERENCES),
                    value=defaults.reference,
                    label="Reference policy (base: adapter off; previous: the policy this round starts from)",
                )
                smoothing = gr.Number(
                    defaults.label_smoothing, label="Label smoothing (conservative DPO, sigmoid loss; 0–0.5)"
                )
                target_modules = gr.Textbox(
                    ", ".join(defaults.target_modules), label="LoRA target modules (layer names, comma-separated)"
                )
            label_summary = gr.Markdown()
            cont = gr.Checkbox(
                True,
                label="Continue from the serving policy on pairs no round used "
                "(untick: fresh adapter from the base on all pairs)",
            )
            with gr.Row():
                start_btn = gr.Button("Start round", variant="primary")
                cancel_btn = gr.Button("Cancel round", variant="stop")
            train_msg, progress = gr.Markdown(), gr.Markdown()
            plot = gr.LinePlot(x="step", y="value", color="metric", title="Loss · reward margin · accuracy")
            history = gr.Dataframe(label="Rounds", interactive=False)
            with gr.Row():
                serve_choice = gr.Dropdown(
                    services.loop.versions(),
                    value=services.loop.server.version,
                    label="Serve version (roll back or forward)",
                    allow_custom_value=True,
                )
                serve_btn = gr.Button("Serve this version")
            with gr.Row():
                export_kind = gr.Radio(
                    [(description, kind) for kind, description in EXPORT_KINDS.items()], value="pairs", label="Export"
                )
                fmt = gr.Radio(["jsonl", "parquet", "hf"], value="jsonl", label="Format")
                export_btn = gr.Button("Export labels")
            export_file, export_msg = gr.File(label="Export"), gr.Markdown()
            start_btn.click(
                h["start_round"],
                [beta, lr, epochs, batch, loss_type, lora_r, lora_alpha, max_length, cont, reference, smoothing]
                + [target_modules],
                train_msg,
                api_name="start_round",
            )
            cancel_btn.click(h["cancel_round"], None, train_msg, api_name="cancel_round")
            export_btn.click(h["export"], [fmt, export_kind], [export_file, export_msg], api_name="export")
        with gr.Tab("Compare") as compare_tab:
            with gr.Row():
                version_a = gr.Dropdown(
                    services.loop.versions(), value="base", label="Version A", allow_custom_value=True
                )
                version_b = gr.Dropdown(
                    services.loop.versions(),
                    value=services.loop.server.version,
                    label="Version B",
                    allow_custom_value=True,
                )
            stored = gr.Dropdown(
                [p.text for p in services.store.list_prompts(limit=500)], value=None, label="Pick a stored prompt"
            )
            cmp_prompt = gr.Textbox(label="Prompt", lines=2)
            stored.change(lambda p: p, stored, cmp_prompt, api_name=False)
            compare_tab.select(h["stored_prompts"], None, stored, api_name="stored_prompts")
            seed = gr.Number(0, label="Seed", precision=0)
            gr.Markdown("Both versions sample with the same seed and the Label tab's sampling settings.")
            cmp_btn = gr.Button("Generate both", variant="primary")
            with gr.Row():
                out_a, out_b = gr.Textbox(label="A", lines=10), gr.Textbox(label="B", lines=10)
            cmp_btn.click(
                h["compare"],
                [cmp_prompt, version_a, version_b, seed, temperature, top_p, max_new],
                [out_a, out_b],
                api_name="compare",
            )
        status_outputs = [progress, plot, history, serving, label_summary]
        gr.Timer(1.0).tick(h["round_status"], None, status_outputs, api_name="round_status", show_progress="hidden")
        serve_btn.click(h["serve"], serve_choice, train_msg, api_name="serve")
        for event in (serve_btn.click, start_btn.click, gr.Timer(5.0).tick):
            event(h["versions"], None, [serve_choice, version_a, version_b], api_name=False, show_progress="hidden")
        demo.load(h["round_status"], None, status_outputs, api_name=False)
        demo.load(h["versions_on_load"], None, [serve_choice, version_a, version_b], api_name=False)
    return demo


def positive_int(text: str) -> int:
    """argparse type for counts: refuses 0, negatives and non-numbers before any weights load."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="prefloop: label, train DPO rounds, serve the new policy live.")
    add_common_arguments(parser)
    parser.add_argument("--exports", default="exports", help="Folder for exported preference pairs")
    parser.add_argument(
        "--quantization",
        default="none",
        choices=["auto", "nf4", "none"],
        help="Serving model weights; training picks NF4 on CUDA by itself",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=list(SERVER_BACKENDS),
        help="How pairs are sampled: auto (compiled static cache on CUDA, eager on CPU), eager, static, "
        "or vllm (needs the vllm package and a CUDA GPU)",
    )
    parser.add_argument(
        "--vllm-max-lora-rank",
        type=positive_int,
        default=64,
        help="vllm backend: the largest LoRA rank it serves (train rounds with lora_r at most this)",
    )
    parser.add_argument(
        "--vllm-gpu-memory",
        type=float,
        default=0.3,
        help="vllm backend: share of GPU memory vLLM reserves; the rest stays for training rounds",
    )
    parser.add_argument("--queue-depth", type=positive_int, default=8, help="Pairs kept ready for labelers")
    parser.add_argument(
        "--sample-batch",
        type=positive_int,
        default=4,
        help="Prompts sampled together (2 completions each); at most half of --queue-depth, so half the queue "
        "stays ready while a batch samples",
    )
    parser.add_argument(
        "--keep-stale-pairs",
        action="store_true",
        help="After a round or rollback keep queued pairs of older versions (off-policy) instead of dropping them",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--no-browser", action="store_true", help="Do not open a browser tab")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    try:
        services = build_services(args)
    except (StoreError, ModelLoadError, ValueError, ImportError) as err:
        sys.exit(f"prefloop: {err}")
    demo = build_demo(services)
    demo.queue(default_concurrency_limit=8)
    demo.launch(
        server_name=args.host, server_port=args.port, inbrowser=not args.no_browser, head=KEYS_JS, show_error=True
    )


if __name__ == "__main__":
    main(parse_args())
