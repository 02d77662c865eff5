"""An optional serving backend on vLLM (Linux, CUDA GPU, `pip install vllm`): `python app.py --backend vllm`."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from pathlib import Path

from models import load_tokenizer
from models.chat import prompt_ids
from serving.errors import held
from serving.sampling import SamplingSettings, decode_completions
from storage import BASE_VERSION


def check_vllm_adapter(adapter_path: str | Path, max_lora_rank: int) -> None:
    """Refuse an adapter folder that vLLM would only refuse later, on every request that uses it: one without
    adapter_config.json, or of a LoRA rank above the server's `max_lora_rank`."""
    config_file = Path(adapter_path) / "adapter_config.json"
    if not config_file.exists():
        raise ValueError(f"{adapter_path} has no adapter_config.json: pass a round's adapter/ folder")
    config = json.loads(config_file.read_text())  # "r": the rank (PEFT's default 8); rank_pattern: per module
    rank = max([config.get("r", 8), *(config.get("rank_pattern") or {}).values()])
    if rank > max_lora_rank:
        raise ValueError(
            f"{adapter_path} holds a LoRA adapter of rank {rank}, above this vLLM server's max_lora_rank "
            f"({max_lora_rank}): train rounds with lora_r <= {max_lora_rank}, or restart the server with "
            f"max_lora_rank >= {rank} (python app.py --vllm-max-lora-rank {rank})."
        )


class VLLMPolicyServer:
    """The `PolicyBackend` interface (load / serve / generate / generate_tokens / version) on vLLM: paged
    attention, continuous batching and CUDA graphs, with each round's adapter sent per request as a
    `LoRARequest`. Needs the `vllm` package (Linux, CUDA GPU); the app uses it with `--backend vllm`.

    vLLM reserves `gpu_memory_utilization` of the GPU's memory when it starts; the default leaves room for
    training rounds on the same GPU. `max_lora_rank` must be at least the rounds' LoRA rank. Seeds are passed
    to vLLM per completion (seed + completion index), so a seed repeats its completions.
    """

    def __init__(
        self,
        model: str,
        gpu_memory_utilization: float = 0.3,
        max_lora_rank: int = 64,
        dtype: str = "auto",
        max_prompt_tokens: int = 1024,
        **llm_kwargs,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise ImportError(
                "VLLMPolicyServer needs vLLM: pip install vllm (Linux with a CUDA GPU), or use TorchPolicyServer "
                f"(backend 'static' on CUDA) instead. Import failed with: {err}"
            ) from err
        self.model_name = model
        self.device = "cuda"
        self.backend = "vllm"
        self.max_lora_rank = max_lora_rank
        self.max_prompt_tokens = max_prompt_tokens
        self.tokenizer = load_tokenizer(model)
        self.llm = LLM(
            model=model,
            dtype=dtype,
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            gpu_memory_utilization=gpu_memory_utilization,
            **llm_kwargs,
        )
        self._adapters: dict[str, object] = {}  # version -> LoRARequest
        self.version = BASE_VERSION
        self._lock = threading.RLock()

    def load(self, version: str, adapter_path: str | None) -> None:
        """Register `version`'s adapter; vLLM reads it on the first request that uses it."""
        if version == BASE_VERSION or version in self._adapters:
            return
        if adapter_path is None:
            raise ValueError(f"version {version!r} needs its adapter folder")
        check_vllm_adapter(adapter_path, self.max_lora_rank)
        from vllm.lora.request import LoRARequest

        with self._lock:
            self._adapters[version] = LoRARequest(version, len(self._adapters) + 1, str(adapter_path))

    def serve(self, version: str, adapter_path: str | None = None) -> None:
        self.load(version, adapter_path)
        with self._lock:
            self.version = version

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        settings: SamplingSettings,
        version: str | None = None,
        wait_s: float | None = None,
    ) -> list[list[str]]:
        tokens = self.generate_tokens(prompts, n, settings, version, wait_s)
        return decode_completions(self.tokenizer, tokens, settings.max_new_tokens)

    def generate_tokens(
        self,
        prompts: Sequence[str],
        n: int,
        settings: SamplingSettings,
        version: str | None = None,
        wait_s: float | None = None,
    ) -> list[list[list[int]]]:
        from vllm import SamplingParams

        ids = [prompt_ids(self.tokenizer, p, keep_last=self.max_prompt_tokens) for p in prompts]
        rows = [{"prompt_token_ids": row} for row in ids for _ in range(n)]
        params = [
            SamplingParams(
                n=1,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_tokens=settings.max_new_tokens,
                seed=None if settings.seed is None else settings.seed + i,
            )
            for i in range(len(rows))
        ]
        with held(self._lock, wait_s):
            version = version or self.version
            if version != BASE_VERSION and version not in self._adapters:
                raise ValueError(f"version {version!r} is not loaded; load it first")
            lora = self._adapters.get(version)
            outputs = self.llm.generate(rows, params, use_tqdm=False, lora_request=lora)
        eos = self.tokenizer.eos_token_id
        tokens = [list(itertools.takewhile(lambda t: t != eos, out.outputs[0].token_ids)) for out in outputs]
        return [tokens[i * n : (i + 1) * n] for i in range(len(prompts))]
