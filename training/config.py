"""Typed configuration for one DPO round. Every field is checked when the config is built.

from training.config import DPOConfig
DPOConfig(beta=0.1, learning_rate=5e-4).to_dict()
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

LOSS_TYPES = ("sigmoid", "ipo", "hinge", "kto")
QUANTIZATION = ("auto", "nf4", "none")
REFERENCES = ("base", "previous")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")
# Upper bounds: past these a round would not fit any machine prefloop runs on (or means a typo); refused up front.
LIMITS = {
    "epochs": 1000,
    "batch_size": 1024,
    "grad_accum": 1024,
    "micro_batch": 1024,
    "lora_r": 1024,
    "lora_alpha": 4096,
    "max_length": 131_072,
    "min_pairs": 1_000_000,
}
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class DPOConfig:
    """Hyper-parameters of one DPO round, recorded in `runs/round_NNN/config.json`."""

    # beta, learning_rate, epochs and rpo_alpha: chosen with bench/tastes.py (docs/benchmarks.md, "Tastes").
    beta: float = field(
        default=0.05, metadata={"help": "DPO temperature β: how far the policy may move from the reference."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the LoRA weights."})
    epochs: int = field(default=3, metadata={"help": "Passes over the training pairs."})
    batch_size: int = field(default=4, metadata={"help": "Preference pairs per optimizer step (before accumulation)."})
    grad_accum: int = field(
        default=1,
        metadata={"help": "Batches accumulated per optimizer step (a step: batch_size × grad_accum pairs)."},
    )
    micro_batch: int | None = field(
        default=None,
        metadata={
            "help": "Pairs per forward/backward pass within a step: changes memory and speed, not the result. "
            "Default: 1 on a CPU (measured fastest), batch_size on CUDA."
        },
    )
    max_length: int = field(default=512, metadata={"help": "Longest prompt+completion in tokens; longer are cut."})
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Prompts longer than this keep their last tokens (default: max_length // 2)."}
    )
    loss_type: str = field(default="sigmoid", metadata={"help": f"One of {LOSS_TYPES}."})
    label_smoothing: float = field(
        default=0.0,
        metadata={"help": "Conservative DPO: assumed label-noise rate in [0, 0.5); sigmoid loss only."},
    )
    rpo_alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of an NLL term on the chosen answers, per token (RPO, Pang et al. 2024; TRL's rpo_alpha): "
            "keeps the answers people liked likely, against likelihood displacement. 0: plain DPO. The kto loss has "
            "no pairs and ignores it."
        },
    )
    dpop_lambda: float = field(
        default=0.0,
        metadata={
            "help": "DPO-Positive (Pal et al. 2024): weight of a penalty, inside the DPO margin, on the chosen answer "
            "becoming less likely than under the reference; another guard against likelihood displacement. 0: off."
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA path."})
    target_modules: tuple[str, ...] = field(
        default=DEFAULT_TARGET_MODULES, metadata={"help": "Linear layers given LoRA."}
    )
    heldout_fraction: float = field(
        default=0.2, metadata={"help": "Share of pairs kept out of training to score the round."}
    )
    min_pairs: int = field(default=4, metadata={"help": "Fewest training pairs a round accepts."})
    max_steps: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many optimizer steps, if the epochs would take more (the learning rate then "
            "decays to 0 by it). Empty: train every epoch."
        },
    )
    target_margin: float | None = field(
        default=None,
        metadata={
            "help": "Stop once the held-out reward margin reaches this (checked every eval_every steps; needs "
            "heldout_fraction > 0). Empty: no target."
        },
    )
    eval_every: int = field(
        default=5,
        metadata={"help": "With target_margin: score the held-out pairs every this many steps (a forward pass each)."},
    )
    diagnostic_prompts: int = field(
        default=16,
        metadata={
            "help": "Held-out prompts the trained policy and the base each answer once after the round, for its "
            "length, diversity, repetition and KL from the base (eval-only prompts first). 0: no diagnostics."
        },
    )
    diagnostic_tokens: int = field(
        default=96, metadata={"help": "Most new tokens per diagnostic sample (the app's temperature and top_p)."}
    )
    # The health gate (training/gate.py): a round failing any check is not served by itself. None: check off.
    gate_nll_increase: float | None = field(
        default=0.5,
        metadata={
            "help": "Gate: most the round's answers' NLL per token under the base may exceed the base's own answers' "
            "(nats), on the diagnostic prompts."
        },
    )
    gate_foreign_script: float | None = field(
        default=0.02,
        metadata={"help": "Gate: most share of letters in a script the prompt does not use, above the base's."},
    )
    gate_kl: float | None = field(
        default=1.0, metadata={"help": "Gate: most KL per token from the base on the round's own answers (nats)."}
    )
    gate_heldout_accuracy: float | None = field(
        default=0.5, metadata={"help": "Gate: least held-out preference accuracy (with held-out pairs)."}
    )
    gate_invented: float | None = field(
        default=0.1,
        metadata={
            "help": "Gate: most share of the round's answers with a token it made at least 4 nats likelier where the "
            "base found it unlikely (under -6 nats): where it writes words the base would not, such as invented "
            "ones, which the NLL and KL average away."
        },
    )
    gate_logratio_drop: float | None = field(
        default=50.0,
        metadata={
            "help": "Gate: most both held-out answers (chosen and rejected) may lose in log π/π_ref, in nats summed "
            "over an answer (likelihood displacement)."
        },
    )
    continue_from_serving: bool = field(
        default=True,
        metadata={
            "help": "True: continue the serving adapter on pairs no round used. False: fresh adapter on all pairs."
        },
    )
    arena_pairs: bool = field(
        default=False,
        metadata={
            "help": "Also train on arena votes: a battle won by A or B is a pair (winner chosen, loser rejected); "
            "ties, both-bad and battles on eval-only prompts never train. Continuing: battles no round used."
        },
    )
    reference: str = field(
        default="base",
        metadata={"help": "Reference policy: 'base' (adapter off) or 'previous' (the policy the round starts from)."},
    )
    quantization: str = field(default="auto", metadata={"help": "auto (NF4 on CUDA, none on CPU), nf4 or none."})
    compute_dtype: str = field(
        default="auto",
        metadata={
            "help": "Matmuls under bf16 autocast or in fp32 (weights and optimizer stay as loaded): auto = bf16 on "
            "CUDA, and on CPUs that multiply bf16 natively (AMX / AVX512-BF16) for unquantized models."
        },
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for activation memory."})
    memory_budget_gib: float | None = field(
        default=None,
        metadata={
            "help": "CPU: memory the round's training may use; over it, checkpointing and smaller micro-batches "
            "(default: 0.8 × the memory free when the round starts)."
        },
    )
    group_by_length: bool = field(
        default=True,
        metadata={"help": "Put pairs of similar length in one step (less padding); steps still come in random order."},
    )
    seed: int = field(default=0, metadata={"help": "Seeds the held-out split, shuffling and LoRA init."})

    def __post_init__(self) -> None:
        _check(self.beta > 0 and math.isfinite(self.beta), f"beta must be > 0, got {self.beta}")
        _check(0 < self.learning_rate < 1, f"learning_rate must be in (0, 1), got {self.learning_rate}")
        for name, most in LIMITS.items():
            value = getattr(self, name)
            if name == "micro_batch" and value is None:
                continue
            _check(
                isinstance(value, int) and 1 <= value <= most,
                f"{name} must be a whole number from 1 to {most}"
                + (" (or unset)" if name == "micro_batch" else "")
                + f", got {value!r}",
            )
        _check(self.max_length >= 16, f"max_length must be >= 16 tokens, got {self.max_length}")
        if self.max_prompt_length is None:
            object.__setattr__(self, "max_prompt_length", self.max_length // 2)
        _check(
            1 <= self.max_prompt_length < self.max_length,
            f"max_prompt_length must be in [1, max_length={self.max_length}), got {self.max_prompt_length}",
        )
        _check(self.loss_type in LOSS_TYPES, f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        _check(0 <= self.label_smoothing < 0.5, f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        _check(
            self.label_smoothing == 0 or self.loss_type == "sigmoid",
            f"label_smoothing applies to loss_type 'sigmoid' (conservative DPO) only; set it to 0 for "
            f"{self.loss_type!r}, or use loss_type 'sigmoid', got label_smoothing={self.label_smoothing}",
        )
        _check(math.isfinite(self.rpo_alpha) and self.rpo_alpha >= 0, f"rpo_alpha must be >= 0, got {self.rpo_alpha}")
        _check(
            math.isfinite(self.dpop_lambda) and self.dpop_lambda >= 0,
            f"dpop_lambda must be >= 0, got {self.dpop_lambda}",
        )
        _check(
            self.dpop_lambda == 0 or self.loss_type in ("sigmoid", "hinge"),
            f"dpop_lambda applies to loss_type 'sigmoid' or 'hinge'; set it to 0 for {self.loss_type!r}",
        )
        _check(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        _check(0 <= self.heldout_fraction < 1, f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        self._check_stopping()
        _check(
            self.quantization in QUANTIZATION, f"quantization must be one of {QUANTIZATION}, got {self.quantization!r}"
        )
        _check(
            self.memory_budget_gib is None or self.memory_budget_gib > 0,
            f"memory_budget_gib must be > 0 GiB (or unset), got {self.memory_budget_gib}",
        )
        _check(
            self.compute_dtype in COMPUTE_DTYPES,
            f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}",
        )
        _check(self.reference in REFERENCES, f"reference must be one of {REFERENCES}, got {self.reference!r}")
        _check(len(self.target_modules) > 0, "target_modules must name at least one linear layer, e.g. q_proj")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def _check_stopping(self) -> None:
        """max_steps, target_margin, eval_every and the diagnostics' sizes."""
        _check(
            self.max_steps is None or (isinstance(self.max_steps, int) and self.max_steps >= 1),
            f"max_steps must be a whole number >= 1 (or empty: every epoch), got {self.max_steps!r}",
        )
        _check(
            self.target_margin is None or (math.isfinite(self.target_margin) and self.target_margin > 0),
            f"target_margin must be a reward margin > 0 (or empty: no target), got {self.target_margin}",
        )
        _check(
            self.target_margin is None or self.heldout_fraction > 0,
            "target_margin is checked on held-out pairs, but heldout_fraction is 0: set heldout_fraction above 0 "
            "(e.g. 0.2), or empty target_margin and stop with max_steps instead",
        )
        _check(
            isinstance(self.eval_every, int) and self.eval_every >= 1,
            f"eval_every must be a whole number of steps >= 1, got {self.eval_every!r}",
        )
        _check(
            isinstance(self.diagnostic_prompts, int) and 0 <= self.diagnostic_prompts <= 1024,
            "diagnostic_prompts must be a whole number from 0 (no diagnostics) to 1024, "
            f"got {self.diagnostic_prompts!r}",
        )
        gates = ("gate_nll_increase", "gate_foreign_script", "gate_kl", "gate_invented", "gate_heldout_accuracy")
        gates += ("gate_logratio_drop",)
        for name in gates:
            value = getattr(self, name)
            _check(
                value is None or (isinstance(value, int | float) and math.isfinite(value) and value >= 0),
                f"{name} must be a number >= 0 (or empty: that check off), got {value!r}",
            )
        _check(
            isinstance(self.diagnostic_tokens, int) and 1 <= self.diagnostic_tokens <= 2048,
            f"diagnostic_tokens must be a whole number from 1 to 2048, got {self.diagnostic_tokens!r}",
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"target_modules": list(self.target_modules)}

    @classmethod
    def from_dict(cls, values: dict) -> DPOConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown DPO config field(s) {unknown}; valid fields are {sorted(known)}")
        return cls(**values)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
