"""An optional serving backend on vLLM (Linux, CUDA GPU, `pip install vllm`): `python app.py --backend vllm`.

This module imports without vllm; only `VLLMPolicyServer(...)` and its generation need it.
"""

from __future__ import annotations

import json
from pathlib import Path

from models import load_tokenizer
from serving.base import DEFAULT_MAX_PROMPT_TOKENS, BasePolicyServer
from serving.sampling import SamplingSettings


def generation_eos(model: str) -> int | list[int] | None:
    """The model's own end-of-sequence id(s), as transformers' `generate` reads them: its generation_config.json,
    else the generation config transformers derives from its config.json."""
    from transformers import AutoConfig, GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model).eos_token_id
    except OSError:  # no generation_config.json
        return GenerationConfig.from_model_config(AutoConfig.from_pretrained(model)).eos_token_id


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


class VLLMPolicyServer(BasePolicyServer):
    """A `PolicyBackend` on vLLM: paged attention, continuous batching and CUDA graphs, with each round's
    adapter sent per request as a `LoRARequest`. Needs the `vllm` package (Linux, CUDA GPU); the app uses it
    with `--backend vllm`.

    vLLM reserves `gpu_memory_utilization` of the GPU's memory when it starts; the default leaves room for
    training rounds on the same GPU. `max_lora_rank` must be at least the rounds' LoRA rank. Seeds are passed
    to vLLM per completion (seed + completion index), so a seed repeats its completions. A completion ends at
    the same stop tokens as in the other backends (`stops`), which vLLM is given as `stop_token_ids`.
    """

    def __init__(
        self,
        model: str,
        gpu_memory_utilization: float = 0.3,
        max_lora_rank: int = 64,
        dtype: str = "auto",
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        **llm_kwargs,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise ImportError(
                "VLLMPolicyServer needs vLLM: pip install vllm (Linux with a CUDA GPU), or use TorchPolicyServer "
                f"(backend 'static' on CUDA) instead. Import failed with: {err}"
            ) from err
        super().__init__(model, "cuda", load_tokenizer(model), max_prompt_tokens, generation_eos(model))
        self.backend = "vllm"
        self.max_lora_rank = max_lora_rank
        self.llm = LLM(
            model=model,
            dtype=dtype,
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            gpu_memory_utilization=gpu_memory_utilization,
            **llm_kwargs,
        )

    def _load_adapter(self, version: str, adapter_path: str) -> None:
        """Register `version`'s adapter; vLLM reads it on the first request that uses it."""
        check_vllm_adapter(adapter_path, self.max_lora_rank)
        from vllm.lora.request import LoRARequest

        with self._lock:
            self._adapters[version] = LoRARequest(version, len(self._adapters) + 1, adapter_path)

    def _sample(self, rows: list[list[int]], settings: SamplingSettings, version: str) -> list[list[int]]:
        from vllm import SamplingParams

        stop_token_ids = sorted(self.stops)
        params = [
            SamplingParams(
                n=1,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_tokens=settings.max_new_tokens,
                seed=None if settings.seed is None else settings.seed + i,
                stop_token_ids=stop_token_ids,
            )
            for i in range(len(rows))
        ]
        prompts = [{"prompt_token_ids": row} for row in rows]
        outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self._adapters.get(version))
        return [list(out.outputs[0].token_ids) for out in outputs]
