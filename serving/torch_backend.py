"""The serving policy: base weights loaded once, LoRA adapters swapped in by version name.

    server = TorchPolicyServer("data/models/SmolLM2-135M-Instruct")
    server.serve("round_001", "runs/round_001/adapter")
    server.generate(["Write a haiku about rain."], n=2, settings=SamplingSettings())

Swapping never reloads the base. One lock serializes generation and swaps, so a swap never lands in the
middle of a batch. Every `model.generate` runs on the server's own worker thread, whichever thread asked for
it: on CUDA the static backend's compiled step replays CUDA graphs, which torch records per thread (each new
thread would record them again, in a memory pool of its own).

Two generation backends share everything but the cache (`TorchPolicyServer.backend`, settable at any time):

- `eager`: `model.generate` with the default dynamic cache. Each round's adapter is loaded beside the others
  and made active with PEFT's `set_adapter` / `disable_adapters`. The default on a CPU with native bf16
  (AVX512-BF16 or AMX) and with 4-bit weights; a CPU without native bf16 gets the onnx backend (`serving/__init__.py`).
- `static`: `model.generate(..., cache_implementation="static")`, for which transformers compiles the decoding
  step with `torch.compile`. A compiled step is reused only while the shapes it saw repeat, so every batch is
  padded to `batch_rows` rows (padding rows repeat a real prompt and are marked finished before their first
  token) and prompts are left-padded to the next of a few fixed lengths (`prompt_buckets`), which keeps the
  static cache at a few sizes. Adapters are not loaded side by side here: the serving adapter's weights are
  copied in place into one LoRA slot (PEFT hot-swap), so changing version changes no module the compiled step
  was traced through and does not recompile. What does recompile, once each: the first batch (and the first
  batch after the first adapter is loaded, which turns the plain linear layers into LoRA layers), base vs an
  adapter (PEFT's disable flag), an adapter with another rank, alpha, target modules, dropout or DoRA setting
  than the slot held, a larger batch than `batch_rows` or a longer prompt + `max_new_tokens` than any before.
  The default on CUDA with unquantized weights (transformers does not compile bitsandbytes 4-bit models).

Both sample with `NucleusSampler` (temperature, then top-p, as transformers' warpers define them) and draw
from `torch`'s global generator, so a seed repeats its completions on the same machine and backend.

`VLLMPolicyServer` is an optional third backend on vLLM with the same interface (`python app.py --backend vllm`).
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from models import cpu_has_native_bf16, default_device, load_model, load_tokenizer
from serving.base import DEFAULT_MAX_PROMPT_TOKENS, BasePolicyServer
from serving.errors import ModelInterrupted
from serving.sampling import NucleusSampler, SamplingSettings
from storage import BASE_VERSION

BACKENDS = ("eager", "static")
PROMPT_BUCKETS = (64, 128, 256, 512, 1024, 2048)
DEFAULT_BATCH_ROWS = 8  # the app's default sampler batch: 4 prompts x 2 completions
SERVING_SLOT = "prefloop_serving"  # the one LoRA adapter the static backend generates with


def default_dtype(device: str) -> torch.dtype:
    """bf16 on CUDA GPUs that support it and on CPUs with native bf16; fp32 elsewhere."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def bucket_length(length: int, buckets: Sequence[int] = PROMPT_BUCKETS) -> int:
    """The smallest bucket that holds `length` tokens; past the largest, the next multiple of the largest."""
    for bucket in buckets:
        if length <= bucket:
            return bucket
    return -(-length // buckets[-1]) * buckets[-1]


class _Interrupted(StoppingCriteria):
    """Marks every row finished once `event` is set (the app is stopping): a batch ends at its next token."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _PaddingRowsFinished(StoppingCriteria):
    """Marks the rows past `real_rows` (padding of a fixed-size batch) finished, so they never extend it."""

    def __init__(self, real_rows: int) -> None:
        self.real_rows = real_rows

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        finished[self.real_rows :] = True
        return finished


def _slot_key(key: str) -> str:
    """An adapter file's weight name as the serving slot's parameter in the model:
    base_model.model.model.layers.0.mlp.down_proj.lora_A.weight -> model.layers.0.mlp.down_proj.lora_A.<slot>.weight
    """
    key = key.removeprefix("base_model.model.")
    head, marker, tail = key.rpartition("lora_")
    if not marker:
        return key
    name, _, rest = tail.partition(".")
    return f"{head}lora_{name}.{SERVING_SLOT}" + (f".{rest}" if rest else "")


class GenerationWorker:
    """One daemon thread that runs the calls given to `call`, one at a time, and hands back their result or
    exception to the caller. Daemon, so an idle worker never keeps the process from exiting."""

    def __init__(self, name: str = "policy-generate") -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def call(self, fn: Callable[[], object]):
        """`fn()`, run on the worker thread; waits for it and raises what it raised."""
        if threading.current_thread() is self.thread:  # called from a job: waiting for the queue would deadlock
            return fn()
        future: Future = Future()
        self._jobs.put((future, fn))
        return future.result()

    def close(self) -> None:
        """Let the thread end once the calls already given have run."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            try:
                future.set_result(fn())
            except BaseException as err:  # the caller gets it; the worker goes on
                future.set_exception(err)
            del job, future, fn  # hold no model output or traceback while idle


class TorchPolicyServer(BasePolicyServer):
    """Generates from any loaded version (the base or a round's adapter) of one base model.

    backend: "eager", "static" or "auto" (static on CUDA with unquantized weights, else eager); see the module
    docstring. Assign `server.backend` to switch later. dtype: the weights' dtype; by default bf16 on CUDA
    and on CPUs with native bf16, fp32 elsewhere. batch_rows and prompt_buckets: the fixed shapes of the
    static backend (rows = prompts x completions per prompt); a larger batch raises batch_rows for good.
    """

    def __init__(
        self,
        model: str,
        device: str | None = None,
        quantization: str = "none",
        backend: str = "auto",
        dtype: torch.dtype | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        prompt_buckets: Sequence[int] = PROMPT_BUCKETS,
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
    ) -> None:
        if batch_rows < 1 or not prompt_buckets or min(prompt_buckets) < 1:
            raise ValueError(f"batch_rows and prompt_buckets must be positive, got {batch_rows} and {prompt_buckets}")
        device = device or default_device()
        self.quantization = quantization
        self.dtype = dtype or default_dtype(device)
        tokenizer = load_tokenizer(model)
        tokenizer.padding_side = "left"
        self.model = load_model(model, quantization, device, dtype=self.dtype).eval()
        self.model.requires_grad_(False)
        super().__init__(model, device, tokenizer, max_prompt_tokens, self.model.generation_config.eos_token_id)
        self.batch_rows = batch_rows
        self.prompt_buckets = tuple(sorted(prompt_buckets))
        self._injected: set[str] = set()  # versions loaded into the model as adapters of their own (eager)
        self._slot_weights: dict[str, tuple] = {}  # version -> (LoRA config, weights named as the slot's)
        self._slot: str | None = None  # the version whose weights the serving slot holds
        self._slot_config = None
        self._slot_shapes: dict[str, torch.Size] = {}
        self._compile_config = None
        if not self.device.startswith("cuda"):
            from transformers import CompileConfig

            # transformers compiles the static-cache step by itself only on accelerators; this asks for it here.
            self._compile_config = CompileConfig(mode="default")
            self._compile_config._compile_all_devices = True
        self._active = BASE_VERSION
        self._worker = GenerationWorker()
        self._interrupted = threading.Event()  # set by `interrupt`, for good
        weakref.finalize(self, self._worker.close)
        self._backend = "eager"
        self.backend = backend

    # -- backend --------------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value == "auto":
            value = "static" if self.device.startswith("cuda") and self.quantization == "none" else "eager"
        if value == "vllm":
            raise ValueError("vLLM is a separate class: use VLLMPolicyServer(model) (needs `pip install vllm`)")
        if value not in BACKENDS:
            raise ValueError(f"backend must be 'eager', 'static' or 'auto', got {value!r}")
        with self._lock:
            self._backend = value
            self._activate(self._active)

    # -- versions -------------------------------------------------------------------------------------
    def _load_adapter(self, version: str, adapter_path: str) -> None:
        with self._lock:
            self._adapters[version] = adapter_path
            try:
                if self._backend == "static":
                    self._read_slot_weights(version)
                else:
                    self._inject(version)
            except BaseException:
                del self._adapters[version]
                raise
            self._activate(self._active)

    def _activate(self, version: str) -> None:
        if version == BASE_VERSION:
            if getattr(self.model, "peft_config", None):
                self.model.disable_adapters()
        elif self._backend == "static":
            self._fill_slot(version)
            self.model.set_adapter(SERVING_SLOT)
            self.model.enable_adapters()
        else:
            self._inject(version)
            self.model.set_adapter(version)
            self.model.enable_adapters()
        # PEFT's set_adapter marks the active adapter trainable; a compiled step is specialized on that flag.
        self.model.requires_grad_(False)
        self._active = version

    def _inject(self, version: str) -> None:
        if version not in self._injected:
            self.model.load_adapter(self._adapters[version], adapter_name=version)
            self._injected.add(version)

    def _read_slot_weights(self, version: str) -> tuple:
        if version not in self._slot_weights:
            from peft import PeftConfig
            from peft.utils import load_peft_weights

            path = self._adapters[version]
            config = PeftConfig.from_pretrained(path)
            if getattr(config.peft_type, "value", config.peft_type) != "LORA":
                raise ValueError(
                    f"The static backend swaps LoRA adapters only, and {path} holds a {config.peft_type} adapter: "
                    "set server.backend = 'eager' to serve it."
                )
            weights = {_slot_key(k): v for k, v in load_peft_weights(path, device=self.device).items()}
            self._slot_weights[version] = (config, weights)
        return self._slot_weights[version]

    def _fill_slot(self, version: str) -> None:
        """Put `version`'s weights in the serving slot: in place when the slot has the same structure (no
        recompile), else by loading the slot anew from the adapter folder (the next batch recompiles)."""
        if self._slot == version:
            return
        from peft.utils.hotswap import check_hotswap_configs_compatible, hotswap_adapter_from_state_dict

        config, weights = self._read_slot_weights(version)
        fits = self._slot is not None and {k: v.shape for k, v in weights.items()} == self._slot_shapes
        if fits:
            try:
                check_hotswap_configs_compatible(self._slot_config, config)
            except ValueError:
                fits = False
        self._slot = None  # until the slot holds `version` completely
        if fits:
            hotswap_adapter_from_state_dict(self.model, weights, SERVING_SLOT, config)
        else:
            if SERVING_SLOT in (getattr(self.model, "peft_config", None) or {}):
                self.model.delete_adapter(SERVING_SLOT)
            self.model.load_adapter(self._adapters[version], adapter_name=SERVING_SLOT)
            self._slot_shapes = {
                name: p.shape for name, p in self.model.named_parameters() if f".{SERVING_SLOT}" in name
            }
        self._slot, self._slot_config = version, config

    # -- generation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _sample(self, rows: list[list[int]], settings: SamplingSettings, version: str) -> list[list[int]]:
        batch, kwargs = self._prepare_batch(rows)
        try:
            self._activate(version)
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            processors = LogitsProcessorList([NucleusSampler(settings.temperature, settings.top_p)])
            stopping = StoppingCriteriaList([*kwargs.pop("stopping_criteria", []), _Interrupted(self._interrupted)])

            @torch.no_grad()  # grad mode is per thread: the caller's does not reach the worker
            def run():
                self._check_interrupted()
                return self.model.generate(
                    **batch,
                    **kwargs,
                    stopping_criteria=stopping,
                    do_sample=False,  # NucleusSampler draws the token; greedy selection then takes it
                    logits_processor=processors,
                    max_new_tokens=settings.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )

            # the lock stays with the caller, so a swap still waits for this batch
            out = self._worker.call(run)
            self._check_interrupted()
        finally:
            self._activate(self.version)
        return out[: len(rows), batch["input_ids"].shape[1] :].tolist()

    def interrupt(self) -> None:
        """The app is stopping: a batch in flight ends at its next token (its caller gets ModelInterrupted), and
        no batch starts after."""
        self._interrupted.set()

    def _check_interrupted(self) -> None:
        if self._interrupted.is_set():
            raise ModelInterrupted("The app is stopping: generation was interrupted.")

    def _prepare_batch(self, texts: list[list[int]]) -> tuple[dict, dict]:
        """Left-padded rows of token ids and the backend's extra `generate` arguments. Static: `batch_rows` rows
        (more when there are more texts; `batch_rows` then rises to that) of a bucketed length."""
        if self._backend == "eager":
            batch = self.tokenizer.pad({"input_ids": texts}, padding=True, return_tensors="pt")
            return batch.to(self.device), {}
        real = len(texts)
        self.batch_rows = max(self.batch_rows, real)
        texts = texts + [texts[0]] * (self.batch_rows - real)
        encoded = {"input_ids": texts}
        length = bucket_length(max(len(ids) for ids in encoded["input_ids"]), self.prompt_buckets)
        batch = self.tokenizer.pad(encoded, padding="max_length", max_length=length, return_tensors="pt")
        kwargs = {
            "cache_implementation": "static",
            "stopping_criteria": StoppingCriteriaList([_PaddingRowsFinished(real)]),
        }
        if self._compile_config is not None:
            kwargs["compile_config"] = self._compile_config
        return batch.to(self.device), kwargs
