"""The serving policy: base weights loaded once, LoRA adapters swapped in by version name.

    server = PolicyServer("data/models/SmolLM2-135M-Instruct")
    server.serve("round_001", "runs/round_001/adapter")
    server.generate(["Write a haiku about rain."], n=2, settings=SamplingSettings())

Swapping never reloads the base: each round's adapter is loaded once beside the others and made active.
One lock serializes generation and swaps, so a swap never lands in the middle of a batch.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from storage import BASE_VERSION
from training.model import default_device, load_model, load_tokenizer


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are sampled; stored with every generation."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (0 < self.temperature <= 2 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be in (0, 2], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (isinstance(self.max_new_tokens, int) and 1 <= self.max_new_tokens <= 2048):
            raise ValueError(f"max_new_tokens must be an integer in [1, 2048], got {self.max_new_tokens!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class PolicyServer:
    """Generates from any loaded version (the base or a round's adapter) of one base model."""

    def __init__(self, model: str, device: str | None = None, quantization: str = "none") -> None:
        self.model_name = model
        self.device = device or default_device()
        self.tokenizer = load_tokenizer(model)
        self.tokenizer.padding_side = "left"
        self.model = load_model(model, quantization, self.device).eval()
        self._adapters: dict[str, str] = {}
        self._active = BASE_VERSION
        self.version = BASE_VERSION
        self._lock = threading.RLock()

    def load(self, version: str, adapter_path: str | None) -> None:
        """Make `version` available for generation; loading an adapter keeps the base weights in place."""
        if version == BASE_VERSION or version in self._adapters:
            return
        if adapter_path is None:
            raise ValueError(f"version {version!r} needs its adapter folder")
        with self._lock:
            self.model.load_adapter(adapter_path, adapter_name=version)
            self._adapters[version] = adapter_path
            self._activate(self._active)

    def serve(self, version: str, adapter_path: str | None = None) -> None:
        """Make `version` the policy that new pairs are sampled from."""
        self.load(version, adapter_path)
        with self._lock:
            self._activate(version)
            self.version = version

    def _activate(self, version: str) -> None:
        if version == BASE_VERSION:
            if self._adapters:
                self.model.disable_adapters()
        else:
            self.model.set_adapter(version)
            self.model.enable_adapters()
        self._active = version

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[str], n: int, settings: SamplingSettings, version: str | None = None
    ) -> list[list[str]]:
        """`n` sampled completions for each prompt, from `version` (default: the serving one)."""
        texts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with self._lock:
            version = version or self.version
            if version != BASE_VERSION and version not in self._adapters:
                raise ValueError(f"version {version!r} is not loaded; load it first")
            self._activate(version)
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            out = self.model.generate(
                **batch,
                do_sample=True,
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=0,
                max_new_tokens=settings.max_new_tokens,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            self._activate(self.version)
        completions = self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        completions = [c.strip() for c in completions]
        return [completions[i * n : (i + 1) * n] for i in range(len(prompts))]
