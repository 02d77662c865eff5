"""The memory a training step needs on a CPU, and the micro-batch and checkpointing that fit.

On a CPU, running out of memory raises nothing: the kernel kills the process, and the app with it. So before
training, a round on a CPU estimates the activations of its largest micro-batch from the model's shape and
the pairs' lengths. When they would not fit in the memory budget (by default 80 % of what is free when the
round starts), it takes smaller micro-batches (each optimizer step still sees the same pairs), then turns on
gradient checkpointing; when nothing fits, it refuses before training. (On a CPU the micro-batch is 1 pair
unless set, so this matters for long pairs and large models.)
On CUDA an out-of-memory error is raised, and the round retries with a smaller micro-batch instead.

The estimate, fp32, per micro-batch of `rows` sequences padded to `width` tokens (T = rows x width):
- decoder, no checkpointing: T x layers x (16 x hidden + 6 x intermediate) x 4 bytes;
- decoder, checkpointing: T x layers x 14 x hidden x 4 bytes, plus one layer's full activations;
- LM head: about 3.5 x vocab x 4 bytes per completion token of the largest 1,024-token chunk;
all times 1.5. The constants were fitted to the peak resident memory of forward + backward on
SmolLM2-135M-shaped llamas with LoRA on every linear layer; the margin covers what a whole round adds on the
widest steps (8 sequences of 768 tokens on the default model: 11.3 GiB estimated without the margin, the
round's resident memory grew 17.7 GiB) (README, "Micro-batches and memory on a CPU").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from training.config import DPOConfig
from training.data import TokenizedPair, row_length

GIB = 2**30
MARGIN = 1.5
FREE_SHARE = 0.8


class MemoryPlanError(RuntimeError):
    """Even the smallest micro-batch with gradient checkpointing would not fit; the message says what to change."""


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    vocab: int

    @classmethod
    def of(cls, model) -> ModelShape:
        """The shape of a transformers causal LM (or its config)."""
        config = getattr(model, "config", model)
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        hidden = config.hidden_size
        return cls(
            layers=config.num_hidden_layers,
            hidden=hidden,
            intermediate=getattr(config, "intermediate_size", None) or 4 * hidden,
            vocab=config.vocab_size,
        )


def step_bytes(
    shape: ModelShape,
    rows: int,
    width: int,
    completion_tokens: int,
    checkpointing: bool,
    chunk_size: int = 1024,
    value_bytes: int = 4,
) -> int:
    """Estimated activation memory of forward + backward over one micro-batch (see the module docstring)."""
    tokens = rows * width
    layer = 16 * shape.hidden + 6 * shape.intermediate  # values per token of one layer, kept for backward
    if checkpointing:
        decoder = tokens * (shape.layers * 14 * shape.hidden + layer)
    else:
        decoder = tokens * shape.layers * layer
    head = min(completion_tokens, chunk_size) * shape.vocab * 3.5
    return int(MARGIN * value_bytes * (decoder + head))


def largest_micro_batch(pairs: Sequence[TokenizedPair], pairs_per_micro_batch: int) -> tuple[int, int, int]:
    """(rows, padded width, completion tokens) of the widest micro-batch a round can meet: its longest pairs."""
    longest = sorted(pairs, key=row_length, reverse=True)[:pairs_per_micro_batch]
    if not longest:
        return 0, 0, 0
    completions = sum(len(p.chosen_ids) + len(p.rejected_ids) for p in longest)
    return 2 * len(longest), max(row_length(p) for p in longest), completions


def free_memory_budget(processes: int = 1) -> int:
    """Bytes a round may use for activations by default: 80 % of the memory free now, shared by `processes`."""
    import psutil

    return int(FREE_SHARE * psutil.virtual_memory().available / max(1, processes))


@dataclass(frozen=True)
class MemoryPlan:
    config: DPOConfig
    estimated_bytes: int
    budget_bytes: int
    changed: bool

    def to_dict(self) -> dict:
        return {
            "estimated_gib": round(self.estimated_bytes / GIB, 2),
            "budget_gib": round(self.budget_bytes / GIB, 2),
            "micro_batch": self.config.micro_batch,
            "gradient_checkpointing": self.config.gradient_checkpointing,
            "changed": self.changed,
        }


def plan_memory(config: DPOConfig, pairs: Sequence[TokenizedPair], shape: ModelShape, budget_bytes: int) -> MemoryPlan:
    """The config a round should train with to stay under `budget_bytes`: unchanged when it fits; else the
    largest micro-batch that fits without checkpointing; else the largest with checkpointing, which
    recomputes the forward pass. A step's pairs stay the same, so the gradient does too."""
    micro = config.micro_batch or config.batch_size
    options = [(micro, config.gradient_checkpointing)]
    for checkpointing in (config.gradient_checkpointing, True):
        options += [(m, checkpointing) for m in range(micro, 0, -1) if (m, checkpointing) not in options]
    for m, checkpointing in options:
        need = step_bytes(shape, *largest_micro_batch(pairs, m), checkpointing=checkpointing)
        if need <= budget_bytes:
            if (m, checkpointing) == options[0]:
                return MemoryPlan(config, need, budget_bytes, changed=False)
            planned = dataclasses.replace(config, micro_batch=m, gradient_checkpointing=checkpointing)
            return MemoryPlan(planned, need, budget_bytes, changed=True)
    _, width, _ = largest_micro_batch(pairs, 1)
    raise MemoryPlanError(
        f"This round needs about {need / GIB:.1f} GiB of memory for its longest pair ({width} tokens) even one "
        f"pair at a time with gradient checkpointing, and {budget_bytes / GIB:.1f} GiB are available for it. Lower "
        f"max length (now {config.max_length}), close what else uses memory, or train on a GPU."
    )
