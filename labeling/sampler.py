"""A background sampler that keeps labeling pairs ready, so a vote never waits for generation.

    sampler = PairSampler(store, server, depth=4); sampler.start()
    pair = sampler.take()        # a ready pair, or one generated now if the queue is empty
    PairSampler(store, server, selection=PairSelection(candidates=4, strategy="spread"))   # 4 sampled, 2 shown
    PairSampler(store, server, selection=PairSelection(candidates=4, strategy="committee"))  # learns from the labels

Each queued pair is tagged with the policy version and sampling settings that produced it; when either
changes, older pairs are dropped so labelers only see the serving policy. A new version takes over through
`handover()`: a first batch is sampled from it while it is not serving yet and labelers keep getting the
current version's pairs; then the swap and the queue's replacement happen together, so nobody waits for a
refill after a round. Handovers run one at a time, start to finish. A pair leaves the queue once, under a lock,
so two labelers never get the same pair.

Each prompt gets `selection.candidates` completions, sampled as rows of the same batch, and the two shown are
chosen by `labeling.selection.choose`; the pair records how (`Pair.selection`), and so does its vote. Only the two
shown are stored. The default (2 candidates, random) shows both, exactly as sampled.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, replace

from labeling.committee import Committee, fit_committee
from labeling.selection import LEARNS_FROM_LABELS, PairSelection, choose
from serving import ModelInterrupted, PolicyBackend, SamplingSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """Two completions of one prompt from one policy version; `left`/`right` are generation ids as shown."""

    prompt_id: int
    prompt: str
    version: str
    left_id: int
    left: str
    right_id: int
    right: str
    left_cut: int | None = None  # the token limit stopped this side after that many new tokens
    right_cut: int | None = None
    second_look_of: int | None = None  # a judgement's pair shown again to another labeler: their vote never trains
    selection: str = "random"  # how the two were chosen from the prompt's candidates (labeling/selection.py)

    def swapped(self) -> Pair:
        return replace(
            self,
            left_id=self.right_id,
            left=self.right,
            left_cut=self.right_cut,
            right_id=self.left_id,
            right=self.left,
            right_cut=self.left_cut,
        )


def next_batch_prompts(queued: int, depth: int, batch_prompts: int) -> int:
    """How many prompts the background sampler samples next, with `queued` of `depth` pairs ready; 0: not yet.

    A batch of one prompt costs about as long as a full one (and the static backend pads it to full rows), so
    refilling after every take would waste the batching. The sampler waits until a full batch fits, the batch
    capped at half the depth (rounded up) so that half the queue is still there for labelers while it samples."""
    full = min(batch_prompts, (depth + 1) // 2)
    return full if depth - queued >= full else 0


class PairSampler:
    """Keeps up to `depth` pairs sampled from the serving policy, generating `batch_prompts` prompts at a time,
    each with `selection.candidates` completions of which two are shown."""

    def __init__(
        self,
        store,
        server: PolicyBackend,
        depth: int = 8,
        batch_prompts: int = 4,
        seed: int | None = None,
        keep_stale: bool = False,
        while_sampling=None,
        selection: PairSelection | None = None,
    ):
        if depth < 1 or batch_prompts < 1:
            raise ValueError(f"depth and batch_prompts must be >= 1, got {depth} and {batch_prompts}")
        self.store, self.server = store, server
        self.depth, self.batch_prompts, self.keep_stale = depth, batch_prompts, keep_stale
        self.settings = SamplingSettings()
        self._queue: deque[Pair] = deque()
        self._cond = threading.Condition()
        self._epoch = 0  # bumped by invalidate(); batches started under an older epoch are dropped
        self._stop = False
        self._handover_lock = threading.Lock()  # one handover at a time, from its first batch to the new queue
        self._handing_over = False
        self._in_flight = False  # the background sampler is sampling a batch
        self._batch_started, self.last_batch_s = 0.0, None  # monotonic start of the batch in flight; last duration
        self._thread: threading.Thread | None = None
        self._rng = random.Random(seed)  # the sides
        self.selection = selection or PairSelection()  # the default: 2 candidates, both shown
        # its own stream, so the default selection (which draws nothing) leaves the sides as they were
        self._select_rng = random.Random(None if seed is None else f"{seed}/selection")
        self._committee: tuple[tuple, Committee] | None = None  # (the labels it was fitted to, the committee)
        self.last_error: str | None = None
        # a context held around each batch's generation (the app: a round's process pauses meanwhile on a CPU)
        self.while_sampling = while_sampling or contextlib.nullcontext

    # -- public ---------------------------------------------------------------------------------------
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pair-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def take(self, timeout: float = 300.0) -> Pair:
        """The next pair, sides randomized. With the queue empty, wait for the sampler's batch in flight
        rather than generating a second one beside it; without a running sampler, or while its last batch
        failed and it is not retrying yet, generate on the spot (which shows the error, if it persists)."""
        if self.store.prompts.count() == 0:
            raise RuntimeError("No prompts to label: add a prompt or import a prompt file first.")
        with self._cond:
            if not self._queue and self.running():
                # an error counts only until the sampler retries: then its batch is worth waiting for
                self._cond.wait_for(
                    lambda: self._queue or self._stop or (self.last_error and not self._in_flight), timeout
                )
            pair = self._queue.popleft() if self._queue else None
            self._cond.notify_all()
        if pair is None:
            pairs = self._sample(1)
            if not pairs:
                raise RuntimeError("No prompts to label: add a prompt or import a prompt file first.")
            pair = pairs[0]
        return pair.swapped() if self._rng.random() < 0.5 else pair

    def set_settings(self, settings: SamplingSettings) -> None:
        if settings != self.settings:
            self.settings = settings
            self.invalidate()

    def invalidate(self) -> None:
        """After a new round, a rollback or new settings: drop queued pairs and refill from the serving policy,
        or, with `keep_stale`, keep them (each still tagged with the version that made it) as off-policy data."""
        if not self.keep_stale:
            self._replace_queue([])

    def drop_prompts(self, prompt_ids) -> int:
        """Drop queued pairs of these prompts (held out for the arena: their votes would never train), and the
        batch in flight, which may hold some; returns how many were queued. The queue refills as usual."""
        ids = set(prompt_ids)
        with self._cond:
            self._epoch += 1
            kept = [pair for pair in self._queue if pair.prompt_id not in ids]
            dropped = len(self._queue) - len(kept)
            self._queue.clear()
            self._queue.extend(kept)
            self._cond.notify_all()
        return dropped

    def _replace_queue(self, pairs: list[Pair]) -> None:
        """Drop the queued pairs and any batch in flight; queue `pairs` instead."""
        with self._cond:
            self._epoch += 1
            self._queue.clear()
            self._queue.extend(pairs)
            self._cond.notify_all()

    def handover(self, version: str, swap) -> None:
        """Make `version` serve without emptying the queue: sample a first batch from it while the current
        version keeps serving, then call `swap()` (which makes it serve) and replace the queued pairs with that
        batch. Handovers run one at a time, start to finish, so the last to run serves and the queue holds its
        pairs. If the batch fails, nothing is swapped (ValueError); if `swap()` raises, it must leave the
        current version serving, and its queue is kept. With `keep_stale`, or no background sampler running,
        just swap and `invalidate()`."""
        with self._handover_lock:
            if self.keep_stale or not self.running():
                swap()
                self.invalidate()
                return
            with self._cond:
                busy, epoch = {p.prompt_id for p in self._queue}, self._epoch
                self._handing_over = True  # the background sampler starts no batch until the swap
            try:
                try:
                    pairs = self._sample(min(self.depth, self.batch_prompts), exclude=busy, version=version)
                except Exception as err:
                    raise ValueError(
                        f"{version} could not sample pairs ({err}), so {self.server.version} keeps serving. "
                        f"Check {version}'s adapter, or serve another version."
                    ) from err
                swap()
                with self._cond:  # new settings while sampling (invalidate() bumped the epoch) make them stale
                    self._replace_queue(pairs if epoch == self._epoch else [])
            finally:
                with self._cond:
                    self._handing_over = False
                    self._cond.notify_all()

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def eta_s(self) -> float | None:
        """About how many seconds until a pair is ready: 0 with one queued, else what is left of the batch in
        flight, judged by the last batch's duration (None before any batch finished)."""
        with self._cond:
            if self._queue:
                return 0.0
            if self.last_batch_s is None:
                return None
            if self._in_flight:
                return max(0.0, self.last_batch_s - (time.monotonic() - self._batch_started))
            return self.last_batch_s

    def put_back(self, pair: Pair) -> None:
        """A pair taken but not judged (a labeler undid a vote instead) goes back to the front of the queue,
        if its version still serves."""
        with self._cond:
            if pair.version == self.server.version and len(self._queue) < self.depth:
                self._queue.appendleft(pair)
                self._cond.notify_all()

    # -- background -----------------------------------------------------------------------------------
    def _run(self) -> None:
        def batch() -> int:
            return 0 if self._handing_over else next_batch_prompts(len(self._queue), self.depth, self.batch_prompts)

        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or batch() > 0)
                if self._stop:
                    return
                epoch, n_prompts = self._epoch, batch()
                busy = {p.prompt_id for p in self._queue}
                self._in_flight, self._batch_started = True, time.monotonic()
            error = None
            try:
                pairs = self._sample(n_prompts, exclude=busy)
            except ModelInterrupted:  # the app is stopping
                return
            except Exception as err:  # keep serving labelers; show the error in the UI
                log.exception("sampling failed")
                pairs, error = [], f"Sampling failed: {err}"
            with self._cond:
                self._in_flight, self.last_error = False, error
                if error is None:
                    self.last_batch_s = time.monotonic() - self._batch_started
                if epoch == self._epoch:
                    self._queue.extend(pairs)
                self._cond.notify_all()  # wakes labelers waiting for a pair, or for the error to show them
                if not pairs:
                    self._cond.wait(timeout=2.0)

    def committee(self) -> Committee:
        """The reward committee on the store's decided labels (labeling/committee.py), fitted again only when
        labels have come in, gone, or changed sides (an edited vote) since the last fit."""
        labels = self.store.training_data.preference_pairs()
        seen = tuple((p.judgement_id, hash(p.chosen)) for p in labels)
        fitted = self._committee
        if fitted is None or fitted[0] != seen:
            fitted = seen, fit_committee([(p.chosen, p.rejected) for p in labels], self._select_rng)
            self._committee = fitted
        return fitted[1]

    def _sample(self, n_prompts: int, exclude=(), version: str | None = None) -> list[Pair]:
        prompts = self.store.prompts.for_labeling(n_prompts, exclude_ids=exclude)
        if not prompts:
            return []
        settings, version, n = self.settings, version or self.server.version, self.selection.candidates
        with self.while_sampling():
            completions = self.server.generate([p.text for p in prompts], n=n, settings=settings, version=version)
        committee = self.committee() if self.selection.strategy in LEARNS_FROM_LABELS else None
        pairs = []
        for prompt, candidates in zip(prompts, completions, strict=True):
            i, j, how = choose([str(text) for text in candidates], self.selection, self._select_rng, committee)
            a, b = candidates[i], candidates[j]
            cuts = [getattr(text, "cut_at", None) for text in (a, b)]
            ids = [
                self.store.generations.add(prompt.id, version, str(text), settings.to_dict(), cut_at=cut)
                for text, cut in zip((a, b), cuts, strict=True)
            ]
            pairs.append(Pair(prompt.id, prompt.text, version, ids[0], str(a), ids[1], str(b), *cuts, selection=how))
        return pairs
