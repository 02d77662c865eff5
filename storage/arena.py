"""Arena battles between versions (`store.battles`); the held-out prompts they are fought on: storage/prompts.py.

    battle_id = store.battles.add(prompt_id, "base", "round_002", gen_a, gen_b, left_version="round_002", labeler="ana")
    store.battles.vote(battle_id, "left", labeler="ana")   # the side as shown: left / right / tie / both_bad
    store.battles.voted()                                  # [VotedBattle("base", "round_002", "b"), ...]
    store.battles.preference_pairs(unused_only=True)         # decisive votes as pairs, for rounds that opt in

A battle's completions are `generations` rows with their version and sampling settings, as a pair's are. A vote
is given as the side the labeler saw; which version that was is stored with the battle (`left_version`), and
`winner_of` turns the side into the winner ("a" = version_a, "b" = version_b, "tie", "both_bad"). A battle is
handed to one labeler and voted once, by them. A decisive vote (a or b) can train a round that opts in
(`DPOConfig.arena_pairs`): the winner's completion is chosen, the loser's rejected; the round's lineage records
it in `round_battles`, and its prompt is no longer held out.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from storage.db import Cursor, Database
from storage.errors import StoreError
from storage.labels import PreferencePair
from storage.models import ArenaBattle, VotedBattle
from storage.rounds import SERVING_LINEAGE

ARENA_SIDES = ("left", "right", "tie", "both_bad")  # a vote as shown on screen (left is "A", right is "B")
BATTLE_COLUMNS = (
    "id, prompt_id, version_a, version_b, generation_a, generation_b, left_version, labeler, winner, voted_at, "
    "created_at"
)
# Battles the serving version has not trained on (appended to a WHERE over battles b), as for judgements.
UNUSED_BATTLE = f""" AND b.id NOT IN (SELECT rb.battle_id FROM round_battles rb
                                      WHERE rb.round_id IN {SERVING_LINEAGE})"""


def winner_of(side: str, left_version: str, version_a: str) -> str:
    """The winner of a battle voted `side` ("left" / "right" / "tie" / "both_bad"), given which version was on
    the left: "a" when version_a's side was picked, "b" for version_b's, else the side itself."""
    if side not in ARENA_SIDES:
        raise ValueError(f"side must be one of {', '.join(ARENA_SIDES)}; got {side!r}")
    if side in ("tie", "both_bad"):
        return side
    a_on_left = left_version == version_a
    return "a" if (side == "left") == a_on_left else "b"


def outcome(battle: ArenaBattle) -> str:
    """A voted battle's result in words: "round_002 won", "a tie", "both bad"."""
    if battle.winner in ("a", "b"):
        return f"{battle.version_a if battle.winner == 'a' else battle.version_b} won"
    return {"tie": "a tie", "both_bad": "both bad", None: "no vote yet"}[battle.winner]


class Battles:
    """Arena battles in a `Database` shared with the rest of the store; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        prompt_id: int,
        version_a: str,
        version_b: str,
        generation_a: int,
        generation_b: int,
        left_version: str,
        labeler: str,
    ) -> int:
        """Record a battle handed to `labeler`: version_a's completion `generation_a` against version_b's
        `generation_b`, with `left_version` shown on the left. Returns its id."""
        if version_a == version_b:
            raise StoreError(f"A battle needs two different versions, got {version_a!r} twice; pick another one.")
        if left_version not in (version_a, version_b):
            raise StoreError(f"left_version {left_version!r} is neither {version_a!r} nor {version_b!r}.")

        def insert(cur: Cursor) -> int:
            for generation_id, version in ((generation_a, version_a), (generation_b, version_b)):
                row = cur.execute(
                    "SELECT 1 FROM generations WHERE id = ? AND prompt_id = ? AND version = ?",
                    [generation_id, prompt_id, version],
                ).fetchone()
                if row is None:
                    raise StoreError(
                        f"Generation {generation_id} is not {version}'s completion of prompt {prompt_id}; "
                        "sample the battle again."
                    )
            return cur.execute(
                "INSERT INTO battles (prompt_id, version_a, version_b, generation_a, generation_b, left_version, "
                "labeler, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [prompt_id, version_a, version_b, generation_a, generation_b, left_version, labeler, datetime.now()],
            ).fetchone()[0]

        return self.db.write(insert)

    def get(self, battle_id: int) -> ArenaBattle:
        rows = self.db.read(f"SELECT {BATTLE_COLUMNS} FROM battles WHERE id = ?", [battle_id])
        if not rows:
            raise StoreError(f"No battle #{battle_id}; fetch the next battle.")
        return ArenaBattle(*rows[0])

    def vote(self, battle_id: int, side: str, labeler: str) -> ArenaBattle:
        """Record `labeler`'s vote on the side they saw; committed before returning, which returns the battle
        with its winner (and so which version was where).

        A battle is voted once, by the labeler it was handed to: the same vote again (a double key press, a
        retried request) returns the battle as it is and stores nothing; any other vote is refused."""
        if side not in ARENA_SIDES:
            raise ValueError(f"side must be one of {', '.join(ARENA_SIDES)}; got {side!r}")

        def record(cur: Cursor) -> None:
            row = cur.execute(f"SELECT {BATTLE_COLUMNS} FROM battles WHERE id = ?", [battle_id]).fetchone()
            if row is None:
                raise StoreError(f"No battle #{battle_id}; fetch the next battle.")
            battle = ArenaBattle(*row)
            if battle.labeler != labeler:
                raise StoreError(
                    f"Battle #{battle_id} was handed to {battle.labeler}, so only they can vote on it; fetch a "
                    "battle of your own."
                )
            winner = winner_of(side, battle.left_version, battle.version_a)
            if battle.winner is not None:
                if battle.winner == winner:
                    return
                raise StoreError(
                    f"Battle #{battle_id} already has a vote ({outcome(battle)}); each battle is voted once. "
                    "Fetch the next battle."
                )
            # Two votes racing on this row: one commits, the other is retried (a write conflict) and sees it.
            cur.execute(
                "UPDATE battles SET winner = ?, voted_at = ? WHERE id = ? AND winner IS NULL",
                [winner, datetime.now(), battle_id],
            )

        self.db.write(record)
        return self.get(battle_id)

    def voted(self, versions: Collection[str] | None = None) -> list[VotedBattle]:
        """Voted battles, oldest first, for the arena's statistics (each becomes an `evaluation.Battle`); only
        those between two of `versions` when given."""
        rows = self.db.read("SELECT version_a, version_b, winner FROM battles WHERE winner IS NOT NULL ORDER BY id")
        keep = None if versions is None else set(versions)
        return [VotedBattle(a, b, w) for a, b, w in rows if keep is None or {a, b} <= keep]

    def preference_pairs(self, unused_only: bool = False) -> list[PreferencePair]:
        """Decisive votes (a or b won) as (prompt, chosen = the winner's completion, rejected = the loser's), by
        battle id; ties and "both bad" never become pairs, and battles on eval-only prompts (held out for
        evaluation) never train or export.

        unused_only: leave out battles a finished ('done') round trained on.
        """
        sql = """SELECT p.text, CASE WHEN b.winner = 'a' THEN ga.text ELSE gb.text END AS chosen,
                        CASE WHEN b.winner = 'a' THEN gb.text ELSE ga.text END AS rejected, b.id
                 FROM battles b JOIN prompts p ON p.id = b.prompt_id
                 JOIN generations ga ON ga.id = b.generation_a
                 JOIN generations gb ON gb.id = b.generation_b
                 WHERE b.winner IN ('a', 'b') AND NOT p.eval_only"""
        sql += (UNUSED_BATTLE if unused_only else "") + " ORDER BY b.id"
        rows = self.db.read(sql)
        return [PreferencePair(prompt, chosen, rejected, battle_id=bid) for prompt, chosen, rejected, bid in rows]

    def count_voted(self) -> int:
        return self.db.value("SELECT count(*) FROM battles WHERE winner IS NOT NULL")

    def pair_counts(self) -> dict[tuple[str, str], int]:
        """Voted battles per pair of versions, the pair's names in sorted order."""
        rows = self.db.read(
            "SELECT least(version_a, version_b), greatest(version_a, version_b), count(*) FROM battles "
            "WHERE winner IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
        )
        return {(low, high): n for low, high, n in rows}

    def list(self) -> list[ArenaBattle]:
        """Every battle, voted or not, oldest first."""
        return [ArenaBattle(*row) for row in self.db.read(f"SELECT {BATTLE_COLUMNS} FROM battles ORDER BY id")]
