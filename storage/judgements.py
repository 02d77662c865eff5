"""Votes on pairs (`store.judgements`): each as shown (left / right generation ids) with its choice, its
withdrawal if its labeler undid it, and edits to chosen (a labeler's own better answer, stored as the chosen side).

    judgement_id = store.judgements.add(prompt_id, left_id, right_id, "left", labeler="ana", policy_version="base")
    store.judgements.withdraw(judgement_id, labeler="ana")   # undo: the row stays, it no longer counts
    store.judgements.add_edited_pair(prompt_id, right_id, "A better answer.", labeler="ana", policy_version="base")
    store.judgements.counters(labeler="ana")                 # {"today": 3, "mine": 2, "since_round": 3}

A pair's first judgement is the one that counts (`judged_pairs`, migration 003_one_label_each); a withdrawn one
leaves it, and the row stays for the audit.
"""

from __future__ import annotations

from datetime import datetime

from storage.db import Cursor, Database
from storage.errors import StoreError
from storage.generations import insert_generation
from storage.labels import CHOICES
from storage.models import Judgement
from storage.rounds import SERVING_LINEAGE

# The labels that count: a pair's first judgement (see migration 003_one_label_each).
COUNTED_JUDGEMENTS = "judged_pairs jp JOIN judgements j ON j.id = jp.judgement_id"
# Judgements the serving version has not trained on: no round of its lineage used them (appended to a WHERE
# over judgements j). A round that finished but never served (held back by review or the health gate), or that
# was rolled back, does not use up its labels: the next round from the serving version trains on them.
UNUSED_JUDGEMENT = f""" AND j.id NOT IN (SELECT rj.judgement_id FROM round_judgements rj
                                         WHERE rj.round_id IN {SERVING_LINEAGE})"""


class Judgements:
    """Votes on pairs in a `Database` shared with the rest of the store; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        prompt_id: int,
        left_generation_id: int,
        right_generation_id: int,
        choice: str,
        labeler: str,
        policy_version: str,
        selection: str = "random",
    ) -> int:
        """Record a vote on a pair as shown (left / right generation ids) and how the pair was chosen from its
        prompt's candidates (`selection`: "random", a strategy's name, "control"; labeling/selection.py);
        committed before returning.

        A pair is judged once: the same vote again (a double key press, a retried request) returns the first
        one's id and stores nothing; a different vote on an already judged pair is refused."""
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")

        def insert(cur: Cursor) -> int:
            owned = cur.execute(
                "SELECT count(*) FROM generations WHERE id IN (?, ?) AND prompt_id = ?",
                [left_generation_id, right_generation_id, prompt_id],
            ).fetchone()[0]
            if owned != 2 or left_generation_id == right_generation_id:
                raise StoreError(
                    f"Generations {left_generation_id} and {right_generation_id} are not two completions of prompt "
                    f"{prompt_id}; fetch a new pair and vote again."
                )
            low, high = sorted([left_generation_id, right_generation_id])
            prior = cur.execute(
                "SELECT j.id, j.choice, j.labeler FROM judged_pairs p JOIN judgements j ON j.id = p.judgement_id "
                "WHERE p.low_generation_id = ? AND p.high_generation_id = ?",
                [low, high],
            ).fetchone()
            if prior is not None:
                if prior[1:] == (choice, labeler):
                    return prior[0]
                raise StoreError(
                    f"This pair already has vote #{prior[0]} ({prior[1]}, by {prior[2]}); each pair is judged once. "
                    "Fetch the next pair."
                )
            judgement_id = cur.execute(
                "INSERT INTO judgements (prompt_id, left_generation_id, right_generation_id, choice, labeler, "
                "policy_version, created_at, selection) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [
                    prompt_id,
                    left_generation_id,
                    right_generation_id,
                    choice,
                    labeler,
                    policy_version,
                    datetime.now(),
                    selection,
                ],
            ).fetchone()[0]
            # the primary key on (low, high): of two votes on this pair racing each other, one commits; the
            # other is retried (a write conflict) and then finds this one above
            cur.execute("INSERT INTO judged_pairs VALUES (?, ?, ?)", [low, high, judgement_id])
            return judgement_id

        return self.db.write(insert)

    def withdraw(self, judgement_id: int, labeler: str) -> None:
        """Undo a vote: it stays as a row (the audit) with a withdrawal beside it, never counts, trains or
        exports again, and its pair can be judged anew. Only its labeler may, and not once a round used it."""

        def withdraw(cur: Cursor) -> None:
            row = cur.execute(
                "SELECT j.labeler, j.created_at, w.judgement_id IS NOT NULL FROM judgements j "
                "LEFT JOIN withdrawals w ON w.judgement_id = j.id WHERE j.id = ?",
                [judgement_id],
            ).fetchone()
            if row is None:
                raise StoreError(f"No vote #{judgement_id} to undo.")
            owner, created_at, withdrawn = row
            if withdrawn:
                raise StoreError(f"Vote #{judgement_id} is already undone.")
            if owner != labeler:
                raise StoreError(f"Vote #{judgement_id} is {owner}'s; you can undo only your own votes.")
            used = cur.execute(
                "SELECT min(r.id) FROM rounds r LEFT JOIN round_judgements rj ON rj.round_id = r.id "
                "WHERE (r.status = 'done' AND rj.judgement_id = ?) OR (r.status = 'running' AND r.started_at > ?)",
                [judgement_id, created_at],
            ).fetchone()[0]
            if used is not None:
                raise StoreError(
                    f"Vote #{judgement_id} is in round {used}'s training data, so it cannot be undone; "
                    "a later round can outweigh it."
                )
            cur.execute("DELETE FROM judged_pairs WHERE judgement_id = ?", [judgement_id])
            cur.execute("INSERT INTO withdrawals VALUES (?, ?, ?)", [judgement_id, labeler, datetime.now()])

        self.db.write(withdraw)

    def withdrawn(self) -> list[int]:
        """The ids of withdrawn (undone) judgements, in order."""
        return [jid for (jid,) in self.db.read("SELECT judgement_id FROM withdrawals ORDER BY judgement_id")]

    def add_edited_pair(
        self, prompt_id: int, original_id: int, edited_text: str, labeler: str, policy_version: str
    ) -> int:
        """Edit to chosen: store `edited_text` as a human-written completion of the prompt and a judgement
        with it as chosen (left) and the original completion `original_id` as rejected, its selection "edit".
        Returns its id."""
        edited_text = (edited_text or "").strip()
        if not edited_text:
            raise StoreError("The edited answer is empty: write the better answer, or cancel the edit.")

        def insert(cur: Cursor) -> int:
            original = cur.execute(
                "SELECT text FROM generations WHERE id = ? AND prompt_id = ?", [original_id, prompt_id]
            ).fetchone()
            if original is None:
                raise StoreError(f"Generation {original_id} is not a completion of prompt {prompt_id}.")
            if original[0].strip() == edited_text:
                raise StoreError("The edit is the same as the original: change it, or vote instead.")
            edited_id = insert_generation(cur, prompt_id, policy_version, edited_text, {}, "human", None)
            judgement_id = cur.execute(
                "INSERT INTO judgements (prompt_id, left_generation_id, right_generation_id, choice, labeler, "
                "policy_version, created_at, selection) VALUES (?, ?, ?, 'left', ?, ?, ?, 'edit') RETURNING id",
                [prompt_id, edited_id, original_id, labeler, policy_version, datetime.now()],
            ).fetchone()[0]
            cur.execute("INSERT INTO judged_pairs VALUES (?, ?, ?)", [*sorted([edited_id, original_id]), judgement_id])
            return judgement_id

        return self.db.write(insert)

    def counters(self, labeler: str | None = None) -> dict[str, int]:
        """Counted votes today (since local midnight), by `labeler`, and since the last finished round."""
        midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
        today, mine = self.db.read(
            f"SELECT count(*) FILTER (WHERE j.created_at >= ?), count(*) FILTER (WHERE j.labeler = ?) "
            f"FROM {COUNTED_JUDGEMENTS}",
            [midnight, labeler or ""],
        )[0]
        unused = self.db.value(f"SELECT count(*) FROM {COUNTED_JUDGEMENTS} WHERE true{UNUSED_JUDGEMENT}")
        return {"today": today, "mine": mine, "since_round": unused}

    def count(self, choice: str | None = None) -> int:
        """How many votes there are, or how many with this `choice`."""
        if choice is None:
            return self.db.value("SELECT count(*) FROM judged_pairs")
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")
        return self.db.value(f"SELECT count(*) FROM {COUNTED_JUDGEMENTS} WHERE j.choice = ?", [choice])

    def list(self) -> list[Judgement]:
        """Every judgement, withdrawn ones too, oldest first."""
        rows = self.db.read(
            "SELECT id, prompt_id, left_generation_id, right_generation_id, choice, labeler, policy_version, "
            "created_at, selection FROM judgements ORDER BY id"
        )
        return [Judgement(*row) for row in rows]
