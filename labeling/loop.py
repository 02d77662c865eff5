"""The labeling loop: pairs to judge, votes, ratings, edits and prompts (serving versions and comparing them:
services/versions.py).

loop = Loop(store, server, sampler)
pair = loop.next_pair(); loop.vote(pair, "left", labeler="ana")
pair = loop.next_pair(labeler="bob")   # now and then (store.audit's share) a pair ana judged, for agreement
loop.rate(pair, "right", "down", labeler="ana")          # one completion on its own: 👎 (trains KTO)
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

from access import labeler_name
from labeling.prompts import read_prompts
from labeling.sampler import Pair, PairSampler
from models.chat import count_tokens
from serving import PolicyBackend
from storage import BOTH_BAD_CHOICES, PAIR_CHOICES, Store

AFTER_VOTE_KEPT = 4096  # votes whose next pair is remembered, so a repeated vote gets the same one


def check_prompt_length(server: PolicyBackend, text: str) -> None:
    """Refuse a prompt longer than `server` samples from, saying how to allow it (imported ones keep their last
    tokens instead)."""
    limit = server.max_prompt_tokens
    n = count_tokens(server.tokenizer, text or "", at_most=limit)
    if n > limit:
        size = f"{n} tokens" if n != limit + 1 else f"more than {limit} tokens ({len(text):,} characters)"
        raise ValueError(
            f"This prompt is {size}; prompts are sampled from at most {limit} tokens. Shorten it, or start "
            f"the app with a larger --max-prompt-tokens."
        )


class Loop:
    def __init__(self, store: Store, server: PolicyBackend, sampler: PairSampler, seed: int | None = None) -> None:
        self.store, self.server, self.sampler = store, server, sampler
        self.rng = random.Random(seed)  # which pairs are second looks, and their sides
        self._after: dict[tuple[str, int], list] = {}  # vote -> [lock, the pair shown after it]
        self._after_lock = threading.Lock()

    # -- labeling -------------------------------------------------------------------------------------
    def next_pair(self, labeler: str | None = None) -> Pair:
        """A pair to judge, sides randomized. For a named `labeler`, a share of them (`store.audit`'s second-look
        share, 0 by default) are second looks: a pair someone else judged, its sides randomized anew, whose vote
        measures agreement between labelers and never trains. Otherwise, or with none left, a new pair."""
        if labeler is not None and self.rng.random() < self.store.settings.second_look_share():
            look = self.store.audit.second_look(labeler_name(labeler))
            if look is not None:
                pair = Pair(
                    look.prompt_id,
                    look.prompt,
                    look.version,
                    look.left_id,
                    look.left,
                    look.right_id,
                    look.right,
                    look.left_cut,
                    look.right_cut,
                    second_look_of=look.judgement_id,
                )
                return pair.swapped() if self.rng.random() < 0.5 else pair
        return self.sampler.take()

    def next_pair_after(self, vote: tuple[str, int], labeler: str | None = None) -> Pair:
        """The pair to show after `vote` (its kind and id, as `vote`'s caller knows them): one pair however often
        the vote is repeated (a double click, a retried request), so a repeated vote takes no pair from the
        queue that nobody will see. Waits while the first asker picks it."""
        with self._after_lock:
            entry = self._after.pop(vote, None) or [threading.Lock(), None]
            self._after[vote] = entry  # newest last; the oldest are forgotten
            while len(self._after) > AFTER_VOTE_KEPT:
                self._after.pop(next(iter(self._after)))
        with entry[0]:
            if entry[1] is None:  # none yet, or picking it failed (nothing queued): try again
                entry[1] = self.next_pair(labeler)
            return entry[1]

    def vote(self, pair: Pair, choice: str, labeler: str) -> int:
        """Store a judgement on `pair` as it was shown, with how its pair was chosen (a second vote, for a second
        look); returns its id once it is committed."""
        labeler = labeler_name(labeler)
        if pair.second_look_of is not None:
            return self.store.audit.add_second_vote(pair.second_look_of, pair.left_id, pair.right_id, choice, labeler)
        return self.store.judgements.add(
            pair.prompt_id, pair.left_id, pair.right_id, choice, labeler, pair.version, selection=pair.selection
        )

    def rate(self, pair: Pair, side: str, rating: str, labeler: str) -> int:
        """Store a 👍 ("up") or 👎 ("down") on one completion of `pair` (side "left" or "right"); returns its id."""
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right'; got {side!r}")
        labeler = labeler_name(labeler)
        generation_id = pair.left_id if side == "left" else pair.right_id
        return self.store.ratings.add(generation_id, rating, labeler, pair.version)

    def undo(self, judgement_ids: list[int], labeler: str, second_look: bool = False) -> None:
        """Withdraw `labeler`'s judgements (one vote, or an edit's one or two pairs), or with `second_look` their
        second votes: kept for the record, never trained on; the first that cannot be withdrawn stops the rest
        (StoreError says why)."""
        labeler = labeler_name(labeler)
        withdraw = self.store.audit.withdraw_second_vote if second_look else self.store.judgements.withdraw
        for judgement_id in judgement_ids:
            withdraw(judgement_id, labeler)

    def edit(self, pair: Pair, source: str, text: str, labeler: str) -> list[int]:
        """Edit to chosen: `text` (edited from the `source` completion, "left" or "right", or written from
        scratch, "blank") is stored as human-written and chosen over the completion it was edited from, or over
        both when written from scratch. Returns the new judgements' ids."""
        if source not in ("left", "right", "blank"):
            raise ValueError(f"source must be 'left', 'right' or 'blank'; got {source!r}")
        labeler = labeler_name(labeler)
        originals = {"left": [pair.left_id], "right": [pair.right_id], "blank": [pair.left_id, pair.right_id]}
        return [
            self.store.judgements.add_edited_pair(pair.prompt_id, original, text, labeler, pair.version)
            for original in originals[source]
        ]

    def put_back(self, pair: Pair) -> None:
        """An unjudged pair a labeler had on screen goes back to the queue (when they undo instead); a second
        look does not (it was someone else's pair)."""
        if pair.second_look_of is None:
            self.sampler.put_back(pair)

    def label_counts(self) -> dict[str, int]:
        """What the store holds for training: pairs (left/right votes), both-bad votes, ties and 👍 / 👎 ratings."""
        count = self.store.judgements.count
        return {
            "pairs": sum(count(choice) for choice in PAIR_CHOICES),
            "both_bad": sum(count(choice) for choice in BOTH_BAD_CHOICES),
            "tie": count("tie"),
            "up": self.store.ratings.count("up"),
            "down": self.store.ratings.count("down"),
        }

    # -- prompts --------------------------------------------------------------------------------------
    def add_prompt(self, text: str) -> int:
        self.check_prompt_length(text)
        return self.store.prompts.add(text, source="typed")

    def check_prompt_length(self, text: str) -> None:
        """Refuse a typed prompt longer than the model samples from (imported ones keep their last tokens)."""
        check_prompt_length(self.server, text)

    def import_prompts(self, path: str | os.PathLike, on_progress=None, eval_only: bool = False) -> int:
        """Import a JSONL / CSV / TXT / parquet file or a datasets folder; all or nothing. Returns new prompts.
        `on_progress(fraction, text)` hears each stage (reading, storing). eval_only: held out for the arena."""
        name = Path(path).name
        if on_progress is not None:
            on_progress(0.0, f"Reading {name}…")
        texts = read_prompts(path)
        if on_progress is not None:
            on_progress(0.5, f"Storing {len(texts)} prompts from {name}…")
        return self.store.prompts.add_many(texts, source=name, eval_only=eval_only)

    def hold_out(self, n: int) -> list[int]:
        """Hold out `n` unlabeled prompts for the arena (`store.prompts.hold_out`) and drop their queued pairs."""
        ids = self.store.prompts.hold_out(n)
        self.sampler.drop_prompts(ids)
        return ids
