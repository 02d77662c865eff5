"""The serving policy: one base model, LoRA adapters swapped in by version name, behind one interface.

    server = open_policy_server(model_dir, "cpu")   # onnx (fp32) or eager bf16 on CPU, compiled static on CUDA
    server.serve("round_001", "runs/round_001/adapter")
    server.generate(["Write a haiku about rain."], n=2, settings=SamplingSettings())

Backends, all `PolicyBackend`s built on `BasePolicyServer` (serving/base.py: versions, the lock, the stop rule):
`TorchPolicyServer` (eager / static, serving/torch_backend.py), `OnnxPolicyServer` (ONNX Runtime GenAI, CPU,
serving/onnx_backend.py; the default on CPUs without native bf16) and `VLLMPolicyServer` (serving/vllm_backend.py).
"""

from __future__ import annotations

import importlib.util
import sys

from models import DEFAULT_MODEL_CACHE, cpu_has_native_bf16
from serving.autochoice import measured_backend
from serving.base import DEFAULT_MAX_PROMPT_TOKENS, BasePolicyServer, PolicyBackend
from serving.errors import ModelBusy, ModelInterrupted
from serving.onnx_backend import OnnxPolicyServer
from serving.sampling import NucleusSampler, SamplingSettings, chat_text
from serving.torch_backend import DEFAULT_BATCH_ROWS, GenerationWorker, TorchPolicyServer, bucket_length, default_dtype
from serving.vllm_backend import VLLMPolicyServer, check_vllm_adapter

__all__ = [
    "BasePolicyServer",
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_MAX_PROMPT_TOKENS",
    "ModelBusy",
    "ModelInterrupted",
    "SERVER_BACKENDS",
    "GenerationWorker",
    "NucleusSampler",
    "OnnxPolicyServer",
    "PolicyBackend",
    "SamplingSettings",
    "TorchPolicyServer",
    "VLLMPolicyServer",
    "bucket_length",
    "chat_text",
    "check_vllm_adapter",
    "default_dtype",
    "open_policy_server",
]


SERVER_BACKENDS = ("auto", "eager", "static", "onnx", "vllm")


def open_policy_server(
    model: str,
    device: str,
    quantization: str = "none",
    backend: str = "auto",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    vllm_options: dict | None = None,
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
    cache_dir: str = DEFAULT_MODEL_CACHE,
) -> PolicyBackend:
    """The app's serving policy for `backend`: "auto" is onnx on a CPU without native bf16 (eager if the model
    cannot be exported or run, saying why), on a CPU with it (AVX512-BF16 or AMX) the faster of onnx and eager
    bf16 as timed there once (serving/autochoice.py), and the compiled static backend on CUDA; or a
    `TorchPolicyServer` (eager / static), an `OnnxPolicyServer` (export cached under `cache_dir`), a
    `VLLMPolicyServer` (given `vllm_options`, e.g. max_lora_rank, gpu_memory_utilization).

    Refuses, with what to do instead, a backend this machine cannot run, before any weights are loaded."""
    if backend not in SERVER_BACKENDS:
        raise ValueError(f"backend must be one of {SERVER_BACKENDS}, got {backend!r}")
    if backend == "auto" and device == "cpu" and quantization == "none" and cpu_has_native_bf16():
        openers = {
            "onnx": lambda: OnnxPolicyServer(model, cache_dir=cache_dir, max_prompt_tokens=max_prompt_tokens),
            "eager": lambda: TorchPolicyServer(
                model, device, quantization, "eager", batch_rows=batch_rows, max_prompt_tokens=max_prompt_tokens
            ),
        }
        return measured_backend(model, cache_dir, openers)[0]
    onnx_by_default = device == "cpu" and quantization == "none"
    if backend == "onnx" or (backend == "auto" and onnx_by_default):
        if device != "cpu":
            raise ValueError(
                f"The onnx backend runs on the CPU and this run uses {device!r}: leave --backend at auto "
                "(the compiled static backend on CUDA), or pass --device cpu."
            )
        if quantization != "none":
            raise ValueError(f"The onnx backend serves fp32 weights; drop --quantization {quantization}.")
        try:
            return OnnxPolicyServer(model, cache_dir=cache_dir, max_prompt_tokens=max_prompt_tokens)
        except (ImportError, ValueError) as err:
            if backend == "onnx":
                raise
            print(f"prefloop: serving with the eager backend instead of onnx: {err}", file=sys.stderr)
            backend = "eager"
    if backend != "vllm":
        return TorchPolicyServer(
            model, device, quantization, backend, batch_rows=batch_rows, max_prompt_tokens=max_prompt_tokens
        )
    if not device.startswith("cuda"):
        raise ValueError(
            f"The vllm backend needs a CUDA GPU and this run uses {device!r}: leave --backend at auto "
            "(onnx on CPU), or run on a machine with a GPU."
        )
    if quantization != "none":
        raise ValueError(
            f"The vllm backend serves the model unquantized; drop --quantization {quantization} (training still "
            "uses NF4 on CUDA), or pick --backend auto."
        )
    if importlib.util.find_spec("vllm") is None:
        raise ValueError(
            "The vllm backend needs the vllm package: pip install vllm (Linux with a CUDA GPU), "
            "or leave --backend at auto (the compiled static backend on CUDA)."
        )
    return VLLMPolicyServer(model, max_prompt_tokens=max_prompt_tokens, **(vllm_options or {}))
