"""Labeling: pairs to judge and the votes, ratings and edits on them, the prompts they come from, the
guidelines beside them and the sampling settings they are drawn with.

    labeling = Labeling(store, loop, battles)
    pair = labeling.next_pair("ana"); labeling.vote(pair, "left", "ana"); labeling.label_counts()
    labeling.add_prompt("Explain tides."); labeling.set_sampling(SamplingSettings(temperature=0.7))
"""

from __future__ import annotations

import os
from datetime import datetime

from labeling.arena import Arena as Battles
from labeling.loop import Loop
from labeling.sampler import Pair
from serving import SamplingSettings
from storage import Prompt, Store


class Labeling:
    def __init__(self, store: Store, loop: Loop, battles: Battles | None = None):
        self.store, self.loop, self.battles = store, loop, battles

    # -- pairs and votes (labeling/loop.py) -----------------------------------------------------------
    def next_pair(self, labeler: str | None = None) -> Pair:
        return self.loop.next_pair(labeler)

    def next_pair_after(self, vote: tuple[str, int], labeler: str | None = None) -> Pair:
        return self.loop.next_pair_after(vote, labeler)

    def vote(self, pair: Pair, choice: str, labeler: str) -> int:
        return self.loop.vote(pair, choice, labeler)

    def rate(self, pair: Pair, side: str, rating: str, labeler: str) -> int:
        return self.loop.rate(pair, side, rating, labeler)

    def undo(self, judgement_ids: list[int], labeler: str, second_look: bool = False) -> None:
        self.loop.undo(judgement_ids, labeler, second_look=second_look)

    def edit(self, pair: Pair, source: str, text: str, labeler: str) -> list[int]:
        return self.loop.edit(pair, source, text, labeler)

    def put_back(self, pair: Pair) -> None:
        self.loop.put_back(pair)

    # -- counts ---------------------------------------------------------------------------------------
    def label_counts(self) -> dict[str, int]:
        """What the store holds for training: pairs, both-bad votes, ties and 👍 / 👎 ratings."""
        return self.loop.label_counts()

    def count_votes(self) -> int:
        """Every vote stored (second looks aside)."""
        return self.store.judgements.count()

    def counters(self, labeler: str | None) -> dict[str, int]:
        """The team's and `labeler`'s votes, as the counters line shows them (`store.judgements.counters`)."""
        return self.store.judgements.counters(labeler)

    # -- prompts --------------------------------------------------------------------------------------
    def add_prompt(self, text: str) -> int:
        return self.loop.add_prompt(text)

    def import_prompts(self, path: str | os.PathLike, on_progress=None) -> int:
        return self.loop.import_prompts(path, on_progress=on_progress)

    def count_prompts(self) -> int:
        return self.store.prompts.count()

    def count_unjudged(self) -> int:
        return self.store.prompts.count_unjudged()

    def prompts(self, limit: int | None = None, held_out: bool = True) -> list[Prompt]:
        """Stored prompts, as `store.prompts.list` gives them (held_out: with the arena's too)."""
        return self.store.prompts.list(limit=limit, held_out=held_out)

    # -- guidelines -----------------------------------------------------------------------------------
    def guidelines(self) -> tuple[str, str, datetime] | None:
        """The newest guidelines (text, author, when), None before any are written."""
        return self.store.guidelines.latest()

    def set_guidelines(self, text: str, author: str) -> int:
        """Store a new version of the guidelines; returns its number."""
        return self.store.guidelines.set(text, author)

    # -- sampling settings ----------------------------------------------------------------------------
    def sampling(self) -> SamplingSettings:
        """The settings new pairs sample with."""
        return self.loop.sampler.settings

    def set_sampling(self, settings: SamplingSettings) -> None:
        """New pairs sample with `settings`; queued pairs sampled otherwise are dropped (unless keep_stale).
        Arena battles sample with them too."""
        self.loop.sampler.set_settings(settings)
        if self.battles is not None:
            self.battles.sampler.set_settings(settings)
        kept = settings.to_dict()
        kept.pop("seed")
        self.store.settings.set_sampling(kept)  # the next start samples with them too
