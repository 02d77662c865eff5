"""A CPU serving backend on ONNX Runtime GenAI: `python app.py --backend onnx` (the default on CPU).

    server = OnnxPolicyServer("data/models/SmolLM2-135M-Instruct")   # exports the model to ONNX once (~15 s)
    server.serve("round_001", "runs/round_001/adapter")               # the adapter converted in ~0.2 s
    server.generate(["Write a haiku about rain."], n=2, settings=SamplingSettings())

The base model is exported once with ONNX Runtime GenAI's model builder, in fp32 (the weights the torch policy
and the rounds use, so the two agree token for token), into `<cache>/<model>.onnx/`. The export carries a LoRA
branch beside each projection the rounds train (q/k/v/o, gate/up/down) whose A and B matrices are graph inputs
with an empty default, so the base runs as exported and a round's adapter is a set of inputs: its PEFT weights
are written as an ONNX Runtime adapter file (transposed, B scaled by alpha / r) and activated per request. No
re-export, no merge: a finished round serves in well under a second.

Generation runs in a process of its own: ONNX Runtime GenAI keeps Python's GIL while it decodes, which in the
app's process would stall the web server for each step. One lock serializes requests, as in every backend.
Sampling is ONNX Runtime GenAI's (temperature, then top-p over the whole vocabulary; a seed repeats its
completions on the same machine).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import torch

from models import DEFAULT_MODEL_CACHE, load_tokenizer
from models.chat import prompt_ids
from serving.base import DEFAULT_MAX_PROMPT_TOKENS, BasePolicyServer
from serving.errors import ModelInterrupted
from serving.sampling import SamplingSettings
from storage import BASE_VERSION

EXPORT_FORMAT = 1  # raise when the exported graph changes: older exports are rebuilt
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MARKER = "prefloop_onnx.json"


# -- export -------------------------------------------------------------------------------------------------
def _fingerprint(model: str) -> str:
    """What identifies the weights being exported: the folder's config and weight files (name, size, mtime),
    or the hub id."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    parts = [
        f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in sorted(folder.iterdir())
        if p.suffix in {".json", ".safetensors", ".bin"}
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _wanted_marker(model: str) -> dict:
    import onnxruntime_genai

    return {"format": EXPORT_FORMAT, "source": _fingerprint(model), "onnxruntime_genai": onnxruntime_genai.__version__}


def export_dir(model: str, cache_dir: str | os.PathLike) -> Path:
    """Where `model`'s ONNX export lives: beside a local model folder (`<folder>.onnx`) when its parent is
    writable, else in `cache_dir` under the folder's name or the hub id."""
    folder = Path(model).resolve()
    if folder.is_dir() and os.access(folder.parent, os.W_OK):
        return folder.parent / f"{folder.name}.onnx"
    name = folder.name if folder.is_dir() else model.replace("/", "--")
    return Path(cache_dir) / f"{name}.onnx"


def ensure_export(model: str, cache_dir: str | os.PathLike) -> Path:
    """`model`'s ONNX export with LoRA inputs, made now (in a child process, ~15 s for the default model) unless
    an export of the same weights with this onnxruntime-genai is already there."""
    out, wanted = export_dir(model, cache_dir), _wanted_marker(model)
    marker = out / MARKER
    if marker.exists() and all(json.loads(marker.read_text()).get(k) == v for k, v in wanted.items()):
        return out
    print(f"prefloop: exporting {model} to ONNX for the onnx backend, once (into {out})…", file=sys.stderr, flush=True)
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from serving.onnx_backend import export; export(*sys.argv[1:])"]
        + [model, str(out.resolve())],
        capture_output=True,
        text=True,
        env=_child_env(),
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise ValueError(
            f"Exporting {model} to ONNX failed (the onnx backend needs a model ONNX Runtime GenAI's builder "
            f"supports, e.g. Llama, Qwen, Phi, Gemma, Mistral): start with --backend eager instead.\n{tail}"
        )
    return out


def _child_env() -> dict:
    """The environment for this module's child processes: this checkout importable, wherever they start."""
    root = str(Path(__file__).resolve().parent.parent)
    return os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def _pad_token(tokenizer) -> int:
    """A special token the chat template never writes: ONNX Runtime GenAI masks every input token equal to the
    pad id, so padding with a template token (SmolLM's `<|im_end|>` is both pad and end of turn) would hide
    it inside prompts too."""
    used = set(prompt_ids(tokenizer, "x"))
    for token in tokenizer.all_special_ids:
        if token not in used:
            return token
    raise ValueError("this model's tokenizer has no special token free for padding: use --backend eager")


def export(model: str, out: str | os.PathLike) -> None:
    """Export `model` into `out` (what `ensure_export` runs in a child process): built in a staging folder beside
    `out`, then renamed into place."""
    out = Path(out)
    import onnx_ir as ir
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # A rank-1 LoRA on every projection rounds can train: the builder then lays a LoRA branch beside each.
        base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        present = {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
        targets = [m for m in LORA_MODULES if m in present]
        get_peft_model(base, LoraConfig(r=1, lora_alpha=1, target_modules=targets)).save_pretrained(staging / "lora")
        del base
        source = ["-i", model] if Path(model).is_dir() else ["-m", model, "-c", str(staging / "hf_cache")]
        built = staging / "built"
        options = ["-o", str(built), "-p", "fp32", "-e", "cpu", "--extra_options", f"adapter_path={staging / 'lora'}"]
        subprocess.run(  # the builder's command line: its documented interface
            [sys.executable, "-m", "onnxruntime_genai.models.builder", *source, *options],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        graph = ir.load(built / "model.onnx")
        lora_inputs = {}
        for name in [n for n in graph.graph.initializers if ".lora_A." in n or ".lora_B." in n]:
            value = graph.graph.initializers.pop(name)
            rows, cols = value.shape
            is_a = ".lora_A." in name
            # the rank is the input's free dimension; the default (no adapter) is rank 0: the branch adds zeros
            value.const_value = ir.tensor(np.zeros((rows, 0) if is_a else (0, cols), dtype=np.float32), name=name)
            value.shape = ir.Shape([rows, f"{name}.rank"] if is_a else [f"{name}.rank", cols])
            graph.graph.inputs.append(value)
            graph.graph.initializers.add(value)
            lora_inputs[name] = rows if is_a else cols  # the dimension an adapter's matrix must have
        if not lora_inputs:
            raise ValueError("the builder laid no LoRA branch in this model")
        final = staging / "final"
        final.mkdir()
        ir.save(graph, final / "model.onnx", external_data="model.onnx.data")
        for path in built.iterdir():
            if path.name not in {"model.onnx", "model.onnx.data"}:
                shutil.copy2(path, final / path.name)
        config = json.loads((final / "genai_config.json").read_text())
        config["model"]["pad_token_id"] = _pad_token(load_tokenizer(model))
        (final / "genai_config.json").write_text(json.dumps(config, indent=4))
        marker = _wanted_marker(model) | {"model": model, "lora_inputs": lora_inputs}
        (final / MARKER).write_text(json.dumps(marker, indent=1))
        if out.exists():
            shutil.rmtree(out)
        final.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- adapters -----------------------------------------------------------------------------------------------
def _graph_name(key: str) -> str:
    """A PEFT weight name as the export's input: base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
    -> model.layers.0.attn.q_proj.lora_A.MatMul.weight (the builder calls attention `attn`)."""
    key = key.removeprefix("base_model.model.").replace(".self_attn.", ".attn.")
    return key.removesuffix(".weight") + ".MatMul.weight"


def adapter_params(adapter_dir: str | os.PathLike, lora_inputs: dict[str, int]) -> dict[str, np.ndarray]:
    """A round's PEFT LoRA adapter as the export's inputs: A transposed, B transposed and scaled by alpha / r
    (alpha / sqrt(r) with rsLoRA). Refuses, saying what to do, an adapter the export has no place for."""
    import torch
    from safetensors.torch import load_file

    folder = Path(adapter_dir)
    config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not config_file.exists() or not weights_file.exists():
        raise ValueError(f"{folder} has no adapter_config.json / adapter_model.safetensors: pass a round's adapter/")
    config = json.loads(config_file.read_text())
    unsupported = [
        what
        for what, present in [
            (f"a {config.get('peft_type')} adapter", config.get("peft_type") != "LORA"),
            ("DoRA", config.get("use_dora")),
            ("per-module ranks or alphas", config.get("rank_pattern") or config.get("alpha_pattern")),
            ("modules_to_save", config.get("modules_to_save")),
        ]
        if present
    ]
    if unsupported:
        raise ValueError(
            f"The onnx backend serves plain LoRA; {folder} uses {', '.join(unsupported)}: "
            "start the app with --backend eager to serve it."
        )
    rank = config["r"]
    scale = config["lora_alpha"] / (math.sqrt(rank) if config.get("use_rslora") else rank)
    params = {}
    for key, weight in load_file(str(weights_file)).items():
        name = _graph_name(key)
        if name not in lora_inputs:
            module = key.removeprefix("base_model.model.").split(".lora_")[0]
            raise ValueError(
                f"{folder} trains {module}, which the ONNX export has no LoRA branch for (it has them on "
                f"{', '.join(LORA_MODULES)}): start the app with --backend eager to serve this adapter."
            )
        matrix = weight.to(torch.float32).T.contiguous().numpy()
        if ".lora_B." in name:
            matrix = matrix * np.float32(scale)
        if (matrix.shape[0] if ".lora_A." in name else matrix.shape[1]) != lora_inputs[name]:
            raise ValueError(
                f"{folder}: {key} has shape {tuple(weight.shape)}, not this model's: was it trained "
                "on another base model?"
            )
        params[name] = np.ascontiguousarray(matrix)
    return params


def write_adapter(adapter_dir: str | os.PathLike, lora_inputs: dict[str, int], out: Path) -> Path:
    """The adapter as an ONNX Runtime adapter file at `out`."""
    import onnxruntime as ort

    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    params = adapter_params(adapter_dir, lora_inputs)
    adapter.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in params.items()})
    adapter.export_adapter(str(out))
    return out


class OnnxPolicyServer(BasePolicyServer):
    """A `PolicyBackend` on ONNX Runtime GenAI, CPU only; see the module docstring."""

    def __init__(
        self,
        model: str,
        cache_dir: str | os.PathLike = DEFAULT_MODEL_CACHE,
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime_genai  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "The onnx backend needs onnxruntime-genai: pip install -r requirements.txt, or start with "
                f"--backend eager. Import failed with: {err}"
            ) from err
        self.backend = "onnx"
        self.dtype = "float32"
        tokenizer = load_tokenizer(model)
        self.onnx_dir = ensure_export(model, cache_dir)
        self.lora_inputs: dict[str, int] = json.loads((self.onnx_dir / MARKER).read_text())["lora_inputs"]
        eos = json.loads((self.onnx_dir / "genai_config.json").read_text())["model"]["eos_token_id"]
        super().__init__(model, "cpu", tokenizer, max_prompt_tokens, eos)
        self._adapter_files = Path(tempfile.mkdtemp(prefix="prefloop-onnx-adapters-"))
        # A child process of its own (not multiprocessing's spawn, which would re-run the caller's script),
        # talking over two pipes: serving/onnx_worker.py.
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        worker = Path(__file__).with_name("onnx_worker.py")  # run as a script: no torch in that process
        self._process = subprocess.Popen(
            [
                sys.executable,
                str(worker),
                str(self.onnx_dir.resolve()),
                str(threads or torch.get_num_threads()),  # as many as eager torch would use
                str(to_child),
                str(from_child),
            ],
            pass_fds=(to_child, from_child),
            env=_child_env(),
        )
        os.close(to_child), os.close(from_child)
        self._outbox = Connection(from_parent, readable=False)
        self._inbox = Connection(to_parent, writable=False)
        self._interrupted = False
        weakref.finalize(self, _close, self._outbox, self._inbox, self._process, self._adapter_files)
        try:  # the process's "ready", then one token: a model the export took but ONNX Runtime cannot load or
            self._call(None)  # run fails here, not on a labeler
            self.greedy_tokens(["Hello"], 1)
        except RuntimeError as err:
            self.close()
            raise ValueError(f"ONNX Runtime GenAI cannot run this model ({err}): start with --backend eager.") from err

    def _call(self, message):
        """Send `message` (None: only wait for the ready reply) and return the process's answer."""
        try:
            if message is not None:
                self._outbox.send(message)
            status, result = self._inbox.recv()
        except (EOFError, OSError) as err:
            if self._interrupted:
                raise ModelInterrupted("The app is stopping: generation was interrupted.") from err
            code = self._process.poll()
            raise RuntimeError(
                f"The onnx backend's generation process stopped (exit code {code}); restart the app, or start it "
                "with --backend eager."
            ) from err
        if status == "error":
            raise RuntimeError(f"The onnx backend failed: {result}")
        return result

    def close(self) -> None:
        _close(self._outbox, self._inbox, self._process, self._adapter_files)

    def interrupt(self) -> None:
        """The app is stopping: end the generation process now (a batch in flight gets ModelInterrupted)."""
        self._interrupted = True
        self._process.kill()
        self.close()

    # -- versions -------------------------------------------------------------------------------------------
    def _load_adapter(self, version: str, adapter_path: str) -> None:
        """Convert the adapter (~0.2 s) and load it beside the others; the base stays in place."""
        handle, name = tempfile.mkstemp(suffix=".onnx_adapter", dir=self._adapter_files)  # unique per load
        os.close(handle)
        path = write_adapter(adapter_path, self.lora_inputs, Path(name))
        with self._lock:
            self._call(("load", (str(path), version)))
            self._adapters[version] = adapter_path

    # -- generation -----------------------------------------------------------------------------------------
    def _sample(self, rows: list[list[int]], settings: SamplingSettings, version: str) -> list[list[int]]:
        options = {
            "do_sample": True,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "top_k": 0,  # top-p alone
            "max_new_tokens": settings.max_new_tokens,
        }
        if settings.seed is not None:
            options["random_seed"] = settings.seed
        return self._generate(rows, options, version)

    def greedy_tokens(self, prompts: Sequence[str], max_new_tokens: int, version: str | None = None) -> list[list[int]]:
        """Each prompt's greedy continuation (new tokens up to, without, EOS), all prompts in one padded batch:
        what checks against the torch policy compare."""
        options = {"do_sample": False, "max_new_tokens": max_new_tokens}
        rows = self._batch(prompts, 1, version, None, lambda rows, v: self._generate(rows, options, v))
        return [row[0] for row in rows]

    def token_logprobs(self, prompt: str, completion: Sequence[int], version: str | None = None) -> list[float]:
        """The log-probability of each token of `completion` after `prompt` (as one user turn), from `version`
        (default: the serving one): what checks against the torch policy compare."""
        ids = prompt_ids(self.tokenizer, prompt, keep_last=self.max_prompt_tokens)
        with self._lock:
            version = _process_name(self._loaded(version or self.version))
            return self._call(("logprobs", (ids, list(completion), version)))

    def _generate(self, rows: list[list[int]], options: dict, version: str) -> list[list[int]]:
        return self._call(("generate", (rows, options, _process_name(version))))


def _process_name(version: str) -> str | None:
    """`version` as the generation process names it (None: the base)."""
    return None if version == BASE_VERSION else version


def _close(outbox, inbox, process, adapter_files: Path) -> None:
    outbox.close()  # the process sees the end of its pipe and exits
    inbox.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
    shutil.rmtree(adapter_files, ignore_errors=True)
