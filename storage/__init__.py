"""prefloop's storage: one DuckDB file, named migrations, all of the project's SQL.

store.py opens the file and composes one part per table group, each its own module and `store.` attribute:
prompts.py (`store.prompts`) prompts and which of them labeling and the arena may see (held out or not);
generations.py (`store.generations`) completions; judgements.py (`store.judgements`) votes on pairs, their
withdrawals and edits to chosen; ratings.py (`store.ratings`) 👍 / 👎 on single completions; guidelines.py
(`store.guidelines`); settings.py (`store.settings`) app settings; training_data.py (`store.training_data`) pairs
and unpaired rows to train on and export; rounds.py (`store.rounds`) rounds, lineage and the serving version;
arena.py (`store.battles`) arena battles; audit.py (`store.audit`) label audits and second looks. db.py holds
the connection; migrations.py the schema; labels.py which label feeds which loss; export.py writes labels in
TRL's format; models.py the records handed out.
"""

from storage.arena import ARENA_SIDES, winner_of
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
