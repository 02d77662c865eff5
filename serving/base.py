"""What every serving backend shares: the `PolicyBackend` interface, versions by name behind one lock, prompts
cut to `max_prompt_tokens`, and the stop rule that ends a sampled completion.

    class MyPolicyServer(BasePolicyServer):
        def _load_adapter(self, version, adapter_path): ...   # make it usable; record it in self._adapters
        def _sample(self, rows, settings, version): ...        # the new tokens of each row of prompt ids

A backend keeps only what is its own: how an adapter becomes usable, how a batch of token rows is sampled, and
(the torch one) which version its model holds active.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Protocol, runtime_checkable

from models.chat import prompt_ids
from serving.errors import held
from serving.sampling import Completion, SamplingSettings, decode_completions, stop_ids
from storage import BASE_VERSION

DEFAULT_MAX_PROMPT_TOKENS = 1024  # a longer prompt keeps its last tokens when sampled (the end is the question)


@runtime_checkable
class PolicyBackend(Protocol):
    """What the sampler, the labeling loop and Compare need of a serving policy, whatever runs it."""

    model_name: str
    device: str
    backend: str  # what generates: "eager", "static", "onnx" or "vllm"
    version: str  # the serving version: "base" or "round_NNN"
    tokenizer: object
    max_prompt_tokens: int  # a longer prompt keeps its last tokens when sampled

    def load(self, version: str, adapter_path: str | None) -> None:
        """Make `version` available for generation (the base weights stay in place)."""

    def serve(self, version: str, adapter_path: str | None = None) -> None:
        """Make `version` the policy new pairs are sampled from."""

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        settings: SamplingSettings,
        version: str | None = None,
        wait_s: float | None = None,
    ) -> list[list[str]]:
        """`n` sampled completions for each prompt, from `version` (default: the serving one); ModelBusy if the
        model is not free within `wait_s` seconds (None: wait)."""

    def generate_tokens(
        self,
        prompts: Sequence[str],
        n: int,
        settings: SamplingSettings,
        version: str | None = None,
        wait_s: float | None = None,
    ) -> list[list[list[int]]]:
        """Like `generate`, as the new token ids of each completion, up to (without) its stop token."""


def until_stop(tokens: Sequence[int], stops: Collection[int]) -> list[int]:
    """`tokens` up to, without, the first one in `stops`: where a sampled completion ends."""
    return list(itertools.takewhile(lambda t: t not in stops, tokens))


class BasePolicyServer:
    """The load / serve / generate plumbing of a `PolicyBackend`; see the module docstring.

    eos: the model's own end-of-sequence id(s) (its generation config's, or the export's); with the tokenizer's
    EOS they make `stops`, the token ids that end a completion in every backend (`stop_ids`).
    """

    backend: str

    def __init__(self, model: str, device: str, tokenizer, max_prompt_tokens: int, eos: int | list[int] | None) -> None:
        self.model_name = model
        self.device = device
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens  # longer prompts keep their last tokens when sampled
        self.stops = frozenset(stop_ids(tokenizer, eos))
        self.version = BASE_VERSION
        self._adapters: dict[str, object] = {}  # version -> what the backend needs to generate from it
        self._lock = threading.RLock()  # serializes batches and swaps: a swap never lands inside a batch

    # -- versions -------------------------------------------------------------------------------------------
    def load(self, version: str, adapter_path: str | None) -> None:
        """Make `version` available for generation; loading an adapter keeps the base weights in place."""
        if version == BASE_VERSION or version in self._adapters:
            return
        if adapter_path is None:
            raise ValueError(f"version {version!r} needs its adapter folder")
        self._load_adapter(version, str(adapter_path))

    def serve(self, version: str, adapter_path: str | None = None) -> None:
        """Make `version` the policy that new pairs are sampled from."""
        self.load(version, adapter_path)
        with self._lock:
            self._activate(version)
            self.version = version

    def _load_adapter(self, version: str, adapter_path: str) -> None:
        """Make the adapter in `adapter_path` usable as `version` and record it in `_adapters` (under the lock)."""
        raise NotImplementedError

    def _activate(self, version: str) -> None:
        """Called under the lock when `version` becomes the serving one; a backend that holds one version
        active in its model switches it here."""

    def _loaded(self, version: str) -> str:
        """`version`, refused unless it is loaded."""
        if version != BASE_VERSION and version not in self._adapters:
            raise ValueError(f"version {version!r} is not loaded; load it first")
        return version

    # -- generation -----------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        settings: SamplingSettings,
        version: str | None = None,
        wait_s: float | None = None,
    ) -> list[list[Completion]]:
        """`n` sampled completions for each prompt, from `version` (default: the serving one). wait_s: give up
        with ModelBusy if the model is not free within that many seconds (default: wait)."""
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
        """Like `generate`, as token ids: the new tokens of each completion, up to (without) its stop token."""
        return self._batch(prompts, n, version, wait_s, lambda rows, v: self._sample(rows, settings, v))

    def _sample(self, rows: list[list[int]], settings: SamplingSettings, version: str) -> list[list[int]]:
        """The new tokens sampled after each row of prompt ids, from a loaded `version` (called under the lock);
        a row may run past its stop token, which `generate_tokens` cuts."""
        raise NotImplementedError

    def _batch(
        self,
        prompts: Sequence[str],
        n: int,
        version: str | None,
        wait_s: float | None,
        run: Callable[[list[list[int]], str], list[list[int]]],
    ) -> list[list[list[int]]]:
        """`n` rows per prompt (its chat-template ids, cut to `max_prompt_tokens`) given to `run` with the
        version, holding the lock; each row's new tokens cut at its first stop token, grouped by prompt."""
        if not prompts or n < 1:
            return [[] for _ in prompts]
        ids = [prompt_ids(self.tokenizer, p, keep_last=self.max_prompt_tokens) for p in prompts]
        rows = [row for row in ids for _ in range(n)]
        with held(self._lock, wait_s):  # for the whole batch: a swap waits for it
            new = run(rows, self._loaded(version or self.version))
        new = [until_stop(row, self.stops) for row in new]
        return [new[i * n : (i + 1) * n] for i in range(len(prompts))]
