"""prefloop's storage: one DuckDB file, named migrations, all of the project's SQL.

store.py holds prompts, generations, judgements, ratings and pairs; rounds.py (`store.rounds`) rounds, lineage and the
serving version; battles.py (`store.battles`) arena battles and the prompts held out for them; audit.py (`store.audit`)
label audits and second looks; db.py the connection; migrations.py the schema; labels.py which label feeds which
loss; export.py writes labels in TRL's format; models.py the records handed out.
"""

from storage.battles import ARENA_SIDES, winner_of
from storage.errors import StoreError
from storage.labels import BOTH_BAD_CHOICES, CHOICES, PAIR_CHOICES, RATINGS, PreferencePair, UnpairedExample
from storage.models import BASE_VERSION, ArenaBattle, Generation, Judgement, Prompt, Rating, Round, round_version
from storage.store import DEFAULT_DB, Store

__all__ = [
    "ARENA_SIDES",
    "ArenaBattle",
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
    "winner_of",
]
