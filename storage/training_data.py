"""What rounds train on and exports write (`store.training_data`): labels as (prompt, chosen, rejected) pairs
and as single completions with a 👍 / 👎, in TRL's formats.

    store.training_data.preference_pairs(unused_only=True)   # what the next DPO round trains on
    store.training_data.unpaired_examples(unused_only=True)  # what a KTO round trains on besides the pairs
    store.training_data.export_pairs("pairs.jsonl", "jsonl", include_arena=False)

What each label means for training (a tie, "both bad", a rating) is decided in storage/labels.py; labels on
prompts held out for the arena (eval-only) never train or export.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from storage.arena import Battles
from storage.db import Database
from storage.errors import StoreError
from storage.export import check_format, write_rows
from storage.judgements import COUNTED_JUDGEMENTS, UNUSED_JUDGEMENT
from storage.labels import BOTH_BAD_CHOICES, PAIR_CHOICES, PreferencePair, UnpairedExample, kto_rows, trl_rows
from storage.ratings import COUNTED_RATINGS, UNUSED_RATING


class TrainingData:
    """Training rows from the labels in a `Database` shared with the rest of the store, and from the arena's
    decisive votes (`battles`) where a round or an export opts in; see the module docstring."""

    def __init__(self, db: Database, battles: Battles) -> None:
        self.db = db
        self.battles = battles

    def preference_pairs(
        self, unused_only: bool = False, judgement_ids: Collection[int] | None = None
    ) -> list[PreferencePair]:
        """Left/right votes as (prompt, chosen, rejected), by judgement id; other votes never become pairs, and
        votes on prompts held out for the arena (eval-only) never train or export.

        unused_only: leave out judgements a finished ('done') round trained on.
        judgement_ids: only these judgements.
        """
        sql = f"""SELECT p.text,
                        CASE WHEN j.choice = 'left' THEN gl.text ELSE gr.text END AS chosen,
                        CASE WHEN j.choice = 'left' THEN gr.text ELSE gl.text END AS rejected, j.id, j.selection
                 FROM {COUNTED_JUDGEMENTS}
                 JOIN prompts p ON p.id = j.prompt_id
                 JOIN generations gl ON gl.id = j.left_generation_id
                 JOIN generations gr ON gr.id = j.right_generation_id
                 WHERE NOT p.eval_only AND list_contains(?::VARCHAR[], j.choice)"""
        params: list = [list(PAIR_CHOICES)]
        if unused_only:
            sql += UNUSED_JUDGEMENT
        if judgement_ids is not None:
            sql += " AND list_contains(?::BIGINT[], j.id)"
            params.append(list(judgement_ids))
        rows = self.db.read(sql + " ORDER BY j.id", params)
        return [PreferencePair(p, chosen, rejected, jid, selection=how) for p, chosen, rejected, jid, how in rows]

    def unpaired_examples(self, unused_only: bool = False) -> list[UnpairedExample]:
        """Labels on single completions, for unpaired losses (KTO): each "both bad" vote as two 👎 (left then
        right), by judgement id, then each 👍 / 👎 rating, by rating id; none on eval-only prompts.

        unused_only: leave out labels a finished ('done') round trained on.
        """
        sql = f"""SELECT j.id, p.text, g.text, j.selection FROM {COUNTED_JUDGEMENTS}
                 JOIN prompts p ON p.id = j.prompt_id
                 JOIN generations g ON g.id IN (j.left_generation_id, j.right_generation_id)
                 WHERE NOT p.eval_only AND list_contains(?::VARCHAR[], j.choice)"""
        sql += (UNUSED_JUDGEMENT if unused_only else "") + " ORDER BY j.id, g.id = j.right_generation_id"
        rows = self.db.read(sql, [list(BOTH_BAD_CHOICES)])
        both_bad = [UnpairedExample(prompt, text, False, jid, selection=how) for jid, prompt, text, how in rows]
        sql = f"""SELECT t.id, p.text, g.text, t.rating = 'up' FROM {COUNTED_RATINGS}
                 JOIN prompts p ON p.id = t.prompt_id
                 JOIN generations g ON g.id = t.generation_id WHERE NOT p.eval_only"""
        rows = self.db.read(sql + (UNUSED_RATING if unused_only else "") + " ORDER BY t.id")
        rated = [UnpairedExample(prompt, text, good, rating_id=rating_id) for rating_id, prompt, text, good in rows]
        return both_bad + rated

    def export_pairs(self, path: str | os.PathLike, fmt: str = "jsonl", include_arena: bool = False) -> int:
        """Write all pairs in TRL's conversational format (jsonl, parquet or an hf folder); returns the count.
        include_arena: decisive arena votes too, after the labels, every row with its `source` ("label" /
        "arena") and `battle_id`; without it the rows are the labels alone, as before arena votes could train."""
        check_format(fmt)
        pairs = self.preference_pairs() + (self.battles.preference_pairs() if include_arena else [])
        if not pairs:
            raise StoreError(
                "No preference pairs to export yet: label some pairs (pick left or right)"
                + (" or vote A / B in the arena" if include_arena else "")
                + " first."
            )
        return write_rows(trl_rows(pairs, with_source=include_arena), path, fmt)

    def export_unpaired(self, path: str | os.PathLike, fmt: str = "jsonl", include_arena: bool = False) -> int:
        """Write every label as one completion with a 👍 / 👎 (TRL's unpaired format: prompt, completion, label),
        exactly what a KTO round trains on: each pair as its chosen 👍 and rejected 👎, each "both bad" vote as
        two 👎, and each rating. include_arena: as for `export_pairs`. Returns the number of rows."""
        check_format(fmt)
        pairs = self.preference_pairs() + (self.battles.preference_pairs() if include_arena else [])
        rows = kto_rows(pairs, self.unpaired_examples(), with_source=include_arena)
        if not rows:
            raise StoreError("Nothing to export yet: vote on pairs or rate completions 👍 / 👎 first.")
        return write_rows(rows, path, fmt)
