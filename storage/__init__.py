"""prefloop's storage: one DuckDB file, named migrations, all SQL. See storage/store.py."""

from storage.models import CHOICES, PAIR_CHOICES, Generation, Judgement, PreferencePair, Prompt, Round
from storage.store import Store, StoreError

__all__ = [
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
