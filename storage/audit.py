"""Label audits and second looks (`store.audit`): every counted vote as the audits read it, and pairs shown again
to a second labeler so agreement between labelers can be measured.

    store.audit.votes()                         # [AuditVote("ana", "left", 120, 80, 7, "base"), ...]
    store.settings.set_second_look_share(0.1)   # a tenth of the pairs served are someone else's, shown again
    look = store.audit.second_look("bob")       # a pair judged by someone else that bob has not seen, or None
    store.audit.add_second_vote(look.judgement_id, look.left_id, look.right_id, "right", labeler="bob")
    labels, completions = store.audit.agreement_labels()   # for evaluation.audit.agreement

A second vote is stored in `second_votes`, never in `judgements`: the pair keeps its one training judgement
(migration 003), so a second look changes nothing a round trains on or an export writes. Like a judgement, a
second vote is stored with the sides as shown (a second look re-randomizes them) and counts while it is in
`second_voted` (one per labeler and pair); undoing it takes it out of there and keeps its row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.db import Cursor, Database
from storage.errors import StoreError
from storage.labels import CHOICES
from storage.models import AuditVote

# Counted judgements (see COUNTED_JUDGEMENTS in storage/judgements.py) between two model-written completions: an edit
# to chosen is always shown on the left and chosen, so it says nothing about sides or length.
AUDITED_JUDGEMENTS = """judged_pairs jp JOIN judgements j ON j.id = jp.judgement_id
    JOIN prompts p ON p.id = j.prompt_id
    JOIN generations gl ON gl.id = j.left_generation_id JOIN generations gr ON gr.id = j.right_generation_id
    WHERE coalesce(gl.author, 'model') = 'model' AND coalesce(gr.author, 'model') = 'model'"""
COUNTED_SECOND_VOTES = "second_voted sv JOIN second_votes s ON s.id = sv.second_vote_id"


@dataclass(frozen=True)
class SecondLook:
    """A judged pair to show again to another labeler: the judgement, its prompt and its two completions as the
    first labeler saw them (the caller re-randomizes the sides)."""

    judgement_id: int
    prompt_id: int
    prompt: str
    version: str  # the policy version the pair was sampled from and judged under
    left_id: int
    left: str
    left_cut: int | None
    right_id: int
    right: str
    right_cut: int | None


class Audit:
    """Audit queries and second votes in a `Database` shared with the rest of the store; see the module
    docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the audits -----------------------------------------------------------------------------------
    def votes(self) -> list[AuditVote]:
        """Every counted vote on two model-written completions, oldest first, with the fields of
        `evaluation.audit.Vote`: the labeler, the choice as shown, each side's length in characters, the judgement
        it is on (pair_id) and the policy version the pair was labeled under (batch). Judgements first, then second
        votes. Withdrawn votes and edits to chosen are left out."""
        judged = self.db.read(
            f"""SELECT j.labeler, j.choice, length(gl.text), length(gr.text), j.id, j.policy_version
                FROM {AUDITED_JUDGEMENTS} ORDER BY j.id"""
        )
        second = self.db.read(
            f"""SELECT s.labeler, s.choice, length(gl.text), length(gr.text), s.judgement_id, j.policy_version
                FROM {COUNTED_SECOND_VOTES} JOIN judgements j ON j.id = s.judgement_id
                JOIN generations gl ON gl.id = s.left_generation_id
                JOIN generations gr ON gr.id = s.right_generation_id ORDER BY s.id"""
        )
        return [
            AuditVote(who, choice, left, right, pair, batch)
            for who, choice, left, right, pair, batch in judged + second
        ]

    def agreement_labels(self) -> tuple[dict[str, dict[str, str]], dict[str, tuple[str, str]]]:
        """The pairs with a counted judgement and at least one second vote, as `evaluation.audit.agreement`
        takes them: ({pair: {labeler: "gen_<id>" of the chosen completion, or "tie" / "both_bad" / "skip"}},
        {pair: (its two completions' "gen_<id>", lower id first)}), each pair named "<low id>-<high id>"."""
        rows = self.db.read(
            f"""SELECT jp.low_generation_id, jp.high_generation_id, j.labeler, j.choice,
                       j.left_generation_id, j.right_generation_id, 0 AS second, j.id
                FROM judged_pairs jp JOIN judgements j ON j.id = jp.judgement_id
                WHERE j.id IN (SELECT s.judgement_id FROM {COUNTED_SECOND_VOTES})
                UNION ALL
                SELECT jp.low_generation_id, jp.high_generation_id, s.labeler, s.choice,
                       s.left_generation_id, s.right_generation_id, 1 AS second, s.id
                FROM {COUNTED_SECOND_VOTES} JOIN judged_pairs jp ON jp.judgement_id = s.judgement_id
                ORDER BY 1, 2, 7, 8"""
        )
        labels: dict[str, dict[str, str]] = {}
        completions: dict[str, tuple[str, str]] = {}
        for low, high, who, choice, left, right, _, _ in rows:
            item = f"{low}-{high}"
            completions[item] = (f"gen_{low}", f"gen_{high}")
            picked = {"left": left, "right": right}.get(choice)
            labels.setdefault(item, {})[who] = choice if picked is None else f"gen_{picked}"
        return labels, completions

    # -- second looks (how many to serve: store.settings.second_look_share) ---------------------------
    def second_look(self, labeler: str) -> SecondLook | None:
        """A pair someone else judged (left, right, tie or both bad; not a skip, an edit or an arena-only prompt)
        that `labeler` has no second vote on, the pairs with the fewest second votes first, random among equals;
        None when there is none."""
        rows = self.db.read(
            f"""SELECT j.id, j.prompt_id, p.text, j.policy_version, gl.id, gl.text, gl.cut_at,
                       gr.id, gr.text, gr.cut_at
                FROM {AUDITED_JUDGEMENTS} AND j.labeler <> ? AND j.choice <> 'skip'
                  AND j.id NOT IN (SELECT s.judgement_id FROM {COUNTED_SECOND_VOTES} WHERE s.labeler = ?)
                  AND NOT p.eval_only
                ORDER BY (SELECT count(*) FROM second_voted c WHERE c.judgement_id = j.id), random() LIMIT 1""",
            [labeler, labeler],
        )
        return SecondLook(*rows[0]) if rows else None

    def add_second_vote(self, judgement_id: int, left_id: int, right_id: int, choice: str, labeler: str) -> int:
        """Record `labeler`'s vote on judgement `judgement_id`'s pair, shown with `left_id` on the left; committed
        before returning, which returns its id. It measures agreement and never trains.

        One per labeler and pair: the same vote again returns the first one's id; another is refused, and so is a
        vote by the pair's own labeler or on a pair whose judgement was undone."""
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")

        def insert(cur: Cursor) -> int:
            _check_second_vote(cur, judgement_id, left_id, right_id, labeler)
            prior = cur.execute(
                f"SELECT s.id, s.choice FROM {COUNTED_SECOND_VOTES} WHERE s.judgement_id = ? AND s.labeler = ?",
                [judgement_id, labeler],
            ).fetchone()
            if prior is not None:
                if prior[1] == choice:
                    return prior[0]
                raise StoreError(
                    f"You already gave this pair a second look (#{prior[0]}, {prior[1]}); fetch the next pair."
                )
            second_vote_id = cur.execute(
                "INSERT INTO second_votes (judgement_id, left_generation_id, right_generation_id, choice, labeler, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                [judgement_id, left_id, right_id, choice, labeler, datetime.now()],
            ).fetchone()[0]
            # the primary key on (judgement, labeler): of two such votes racing each other, one commits
            cur.execute("INSERT INTO second_voted VALUES (?, ?, ?)", [judgement_id, labeler, second_vote_id])
            return second_vote_id

        return self.db.write(insert)

    def withdraw_second_vote(self, second_vote_id: int, labeler: str) -> None:
        """Undo a second vote: its row stays, it no longer counts, and the pair may be shown to `labeler` again.
        Only its labeler may."""

        def withdraw(cur: Cursor) -> None:
            row = cur.execute(
                "SELECT s.labeler, sv.second_vote_id IS NOT NULL FROM second_votes s "
                "LEFT JOIN second_voted sv ON sv.second_vote_id = s.id WHERE s.id = ?",
                [second_vote_id],
            ).fetchone()
            if row is None:
                raise StoreError(f"No second look #{second_vote_id} to undo.")
            if row[0] != labeler:
                raise StoreError(f"Second look #{second_vote_id} is {row[0]}'s; you can undo only your own votes.")
            if not row[1]:
                raise StoreError(f"Second look #{second_vote_id} is already undone.")
            cur.execute("DELETE FROM second_voted WHERE second_vote_id = ?", [second_vote_id])

        self.db.write(withdraw)

    def count_second_votes(self) -> int:
        """Counted second votes (undone ones left out)."""
        return self.db.value("SELECT count(*) FROM second_voted")


def _check_second_vote(cur: Cursor, judgement_id: int, left_id: int, right_id: int, labeler: str) -> None:
    """Refuse a second vote on anything but a counted judgement's own pair, or by the labeler who judged it."""
    row = cur.execute(
        "SELECT j.labeler, j.left_generation_id, j.right_generation_id FROM judged_pairs jp "
        "JOIN judgements j ON j.id = jp.judgement_id WHERE j.id = ?",
        [judgement_id],
    ).fetchone()
    if row is None:
        raise StoreError(
            f"Vote #{judgement_id} was undone or never existed, so its pair needs no second look; fetch the next pair."
        )
    if row[0] == labeler:
        raise StoreError(f"Vote #{judgement_id} is your own; a second look needs another labeler. Fetch the next pair.")
    if {left_id, right_id} != {row[1], row[2]} or left_id == right_id:
        raise StoreError(
            f"Generations {left_id} and {right_id} are not the pair of vote #{judgement_id}; fetch the next pair."
        )
