"""Where the data lives and how the model serves: `ServiceConfig`, one typed field per `python app.py` flag.

ServiceConfig(db="data/other.duckdb", queue_depth=8)
add_config_arguments(parser, ServiceConfig, skip=COMMON_FIELDS)    # app.py's flags, help and defaults from here
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labeling.selection import MAX_CANDIDATES, STRATEGIES, PairSelection
from models import DEFAULT_MODEL_CACHE
from serving import DEFAULT_MAX_PROMPT_TOKENS, SERVER_BACKENDS
from storage import DEFAULT_DB
from training.cli import DEFAULT_RUNS, positive_int
from training.config import QUANTIZATION


@dataclass(frozen=True)
class ServiceConfig:
    """Where the data lives and how the model serves; `python app.py --help` lists each field as a flag."""

    # db, model, model_cache, runs and device: the flags the training CLI shares (training/cli.py, COMMON_FIELDS)
    db: str = DEFAULT_DB
    model: str | None = None  # None: the bundled SmolLM2-135M-Instruct
    model_cache: str = DEFAULT_MODEL_CACHE
    runs: str = DEFAULT_RUNS
    device: str | None = None  # None: cuda when available
    exports: str = field(default="exports", metadata={"help": "Folder for exported preference pairs"})
    quantization: str = field(  # rounds pick their own
        default="none",
        metadata={"help": "Serving model weights; training picks NF4 on CUDA by itself", "choices": QUANTIZATION},
    )
    backend: str = field(
        default="auto",
        metadata={
            "help": "How pairs are sampled: auto (onnx on a CPU without native bf16, the faster of onnx and eager "
            "bf16 as timed once on one with it, the compiled static cache on CUDA), eager (torch), static, onnx "
            "(ONNX Runtime GenAI, CPU; the model is exported once beside its folder), or vllm (needs the vllm "
            "package and a CUDA GPU)",
            "choices": list(SERVER_BACKENDS),
        },
    )
    vllm_max_lora_rank: int = field(
        default=64,
        metadata={
            "help": "vllm backend: the largest LoRA rank it serves (train rounds with lora_r at most this)",
            "type": positive_int,
        },
    )
    vllm_gpu_memory: float = field(
        default=0.3,
        metadata={"help": "vllm backend: share of GPU memory vLLM reserves; the rest stays for training rounds"},
    )
    queue_depth: int = field(default=16, metadata={"help": "Pairs kept ready for labelers", "type": positive_int})
    sample_batch: int = field(
        default=8,
        metadata={
            "help": "Prompts sampled together (--candidates completions each); at most half of --queue-depth, so "
            "half the queue stays ready while a batch samples",
            "type": positive_int,
        },
    )
    candidates: int = field(
        default=2,
        metadata={
            "help": f"Completions sampled per prompt, of which --selection shows two (2 to {MAX_CANDIDATES}; "
            "2: both, as sampled). Sampling costs grow with it: N cost N/2 times as much as a pair",
            "type": positive_int,
        },
    )
    selection: str = field(
        default="random",
        metadata={
            "help": "Which two of a prompt's --candidates a labeler sees: random; spread (the two that differ "
            "most in words and length, so ties are rarer); or committee (the two a small committee of reward "
            "models fitted to the labels disagrees on most). Other than random: needs --candidates 3 or more",
            "choices": list(STRATEGIES),
        },
    )
    control_share: float = field(
        default=0.2,
        metadata={
            "help": "With a --selection other than random: the share of pairs chosen at random anyway, recorded as "
            "'control', so the strategy can be compared with random on the same labels",
        },
    )
    keep_stale_pairs: bool = field(
        default=False,
        metadata={
            "help": "After a round or rollback keep queued pairs of older versions (off-policy) instead of "
            "dropping them"
        },
    )
    round_processes: int | None = field(
        default=None,
        metadata={
            "help": "Processes that train each round (torchrun above 1); None: one per GPU, else 1",
            "type": positive_int,
        },
    )
    max_prompt_tokens: int = field(
        default=DEFAULT_MAX_PROMPT_TOKENS,
        metadata={
            "help": "Longest prompt, in tokens: a longer typed prompt is refused, a longer imported one keeps its end",
            "type": positive_int,
        },
    )
    users: str | None = field(
        default=None,
        metadata={
            "help": "Users file (create it with: python -m access --users FILE add NAME --role admin): logins on, "
            "labelers label, admins also train, serve, import, export and manage users. Without it (None): no "
            "logins, everyone is an admin"
        },
    )
    session_hours: float = field(
        default=12.0,
        metadata={"help": "With --users: a login lasts this long; a password reset or role change ends it at once"},
    )

    def __post_init__(self) -> None:
        if self.queue_depth < 1 or self.sample_batch < 1:
            raise ValueError(f"queue_depth and sample_batch must be >= 1, got {self.queue_depth}, {self.sample_batch}")
        if self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if not self.session_hours > 0:
            raise ValueError(f"session_hours must be > 0, got {self.session_hours}")
        if self.round_processes is not None and self.round_processes < 1:
            raise ValueError(f"round_processes must be >= 1, got {self.round_processes}")
        self.pair_selection()  # refuses a selection that cannot work, saying why

    def pair_selection(self) -> PairSelection:
        """How the pair sampler picks the two completions shown (labeling/selection.py)."""
        return PairSelection(self.candidates, self.selection, self.control_share)

    @classmethod
    def from_args(cls, args) -> ServiceConfig:
        """From an argparse namespace with (some of) these fields as attributes."""
        fields = cls.__dataclass_fields__
        return cls(**{name: getattr(args, name) for name in fields if hasattr(args, name)})
