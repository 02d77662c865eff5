"""Loading a base model and its tokenizer, shared by serving and training (neither imports the other).

from models import load_model, load_tokenizer, resolve_model
path = resolve_model(None, DEFAULT_MODEL_CACHE)  # the bundled SmolLM2-135M-Instruct, converted once
"""

from models.loading import (
    DEFAULT_GGUF_FILE,
    DEFAULT_GGUF_PACKAGE,
    DEFAULT_MODEL_CACHE,
    DEFAULT_MODEL_NAME,
    ModelLoadError,
    cpu_has_native_bf16,
    default_device,
    linear_layer_names,
    load_model,
    load_tokenizer,
    prepare_default_model,
    resolve_model,
    resolve_quantization,
)

__all__ = [
    "DEFAULT_GGUF_FILE",
    "DEFAULT_MODEL_CACHE",
    "DEFAULT_GGUF_PACKAGE",
    "DEFAULT_MODEL_NAME",
    "ModelLoadError",
    "cpu_has_native_bf16",
    "default_device",
    "linear_layer_names",
    "load_model",
    "load_tokenizer",
    "prepare_default_model",
    "resolve_model",
    "resolve_quantization",
]
