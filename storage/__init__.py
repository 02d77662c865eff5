"""prefloop's storage: one DuckDB file, named migrations, all SQL. See storage/store.py."""

from storage.models import (
    BOTH_BAD_CHOICES,
    CHOICES,
    PAIR_CHOICES,
    Generation,
    Judgement,
    PreferencePair,
    Prompt,
    Round,
    UnpairedExample,
)
from storage.store import Store, StoreError

__all__ = [
    "BOTH_BAD_CHOICES",
    "UnpairedExample",
    "CHOICES",
    "PAIR_CHOICES",
    "Generation",
    "Judgement",
    "PreferencePair",
    "Prompt",
    "Round",
    "Store",
    "StoreError",
]
