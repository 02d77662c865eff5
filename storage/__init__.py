"""prefloop's storage: one DuckDB file, named migrations, all of the project's SQL.

store.py holds prompts, generations, judgements, ratings and pairs; rounds.py rounds, lineage and the serving version;
migrations.py the schema; export.py writes pairs in TRL's format; models.py the records handed out.
"""

from storage.errors import StoreError
from storage.models import (
    BASE_VERSION,
    BOTH_BAD_CHOICES,
    CHOICES,
    PAIR_CHOICES,
    RATINGS,
    Generation,
    Judgement,
    PreferencePair,
    Prompt,
    Rating,
    Round,
    UnpairedExample,
    round_version,
)
from storage.store import DEFAULT_DB, Store

__all__ = [
    "BASE_VERSION",
    "round_version",
    "DEFAULT_DB",
    "BOTH_BAD_CHOICES",
    "UnpairedExample",
    "CHOICES",
    "PAIR_CHOICES",
    "RATINGS",
    "Rating",
    "Generation",
    "Judgement",
    "PreferencePair",
    "Prompt",
    "Round",
    "Store",
    "StoreError",
]
