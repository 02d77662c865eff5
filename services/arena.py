"""The arena: blind battles between two versions on held-out prompts, their results, and which prompts are held
out for them (labeling/arena.py samples and scores the battles).

    arena = Arena(store, loop, battles)
    battle = arena.next_battle(("base", "round_002"), "ana"); arena.vote(battle.id, "left", "ana")
    arena.hold_out(20); arena.count_held_out()
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from labeling.arena import Arena as Battles
from labeling.arena import ArenaResults, ShownBattle
from labeling.loop import Loop
from storage import ArenaBattle, Store


class Arena:
    def __init__(self, store: Store, loop: Loop, battles: Battles):
        self.store, self.loop, self.battles = store, loop, battles

    @property
    def min_battles(self) -> int:
        """Battles a pair of versions needs before its win rate is shown."""
        return self.battles.min_battles

    def versions(self) -> list[str]:
        return self.battles.versions()

    def latest_pair(self) -> tuple[str, str]:
        return self.battles.latest_pair()

    def choose(self, versions: Sequence[str]) -> tuple[str, str]:
        return self.battles.choose(versions)

    def next_battle(self, versions: Sequence[str], labeler: str) -> ShownBattle:
        return self.battles.next_battle(versions, labeler)

    def vote(self, battle_id: int, side: str, labeler: str) -> ArenaBattle:
        return self.battles.vote(battle_id, side, labeler)

    def queued(self, versions: Sequence[str]) -> int:
        return self.battles.queued(versions)

    def results(self) -> ArenaResults:
        return self.battles.results()

    # -- held-out prompts -----------------------------------------------------------------------------
    def count_held_out(self) -> int:
        """Prompts held out for the arena (evaluation-only)."""
        return self.store.prompts.count_eval_only()

    def hold_out(self, n: int) -> list[int]:
        """Hold out `n` unlabeled prompts at random, dropping their queued pairs; returns their ids."""
        return self.loop.hold_out(n)

    def give_back(self) -> int:
        """Every held-out prompt goes back to labeling; returns how many."""
        return self.store.prompts.give_back_held_out()

    def import_held_out(self, path: str | os.PathLike) -> int:
        """Import a prompts file, held out for the arena; returns the new prompts."""
        return self.loop.import_prompts(path, eval_only=True)
