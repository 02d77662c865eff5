"""The blind arena: battles between two versions kept ready by a background sampler, so a vote never waits, and
`Arena`, the object the UI calls (choose versions, next battle, vote, results).

    arena = Arena.for_loop(loop, versions)                        # beside the labeling loop, sharing its model
    battle = arena.next_battle(("base", "round_002"), labeler="ana")   # sides randomized, no version names in it
    arena.vote(battle.id, "left", labeler="ana").left_version     # the vote reveals who was who
    arena.results().pairs[0].rate                                 # win rate, ties as half, 95% interval

A battle is one held-out prompt (`store.prompts.for_arena`) answered once by each version, with the same
sampling settings, stored as `generations` rows as a pair's completions are. The sampler keeps a small queue per
pair of versions and refills only pairs someone asked for in the last `idle_s` seconds: it starts at the first
request and then sleeps until the next, so it takes the model from the label sampler (the server runs one
generation at a time) only while someone is in the arena. Each battle leaves the queue once, under a lock, and
is recorded with the one labeler it was handed to and the version shown on the left, drawn by a seeded RNG.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from access import labeler_name
from labeling.sampler import next_batch_prompts
from serving import ModelInterrupted, PolicyBackend, SamplingSettings
from storage import BASE_VERSION, ArenaBattle

if TYPE_CHECKING:  # evaluation imports scikit-learn (~2 s): loaded only when results are asked for
    from evaluation import Strength, WinMatrix, WinRate

log = logging.getLogger(__name__)
NO_PROMPTS = (
    "No prompt is held out for the arena: every prompt has trained a round. Add prompts no round has seen "
    "(python -m labeling import-prompts FILE --eval-only holds them out of labeling as well)."
)


@dataclass(frozen=True)
class ReadyBattle:
    """Both versions' completions of one prompt, sampled and stored, not handed out yet."""

    prompt_id: int
    prompt: str
    version_a: str
    version_b: str
    generation_a: int
    text_a: str
    generation_b: int
    text_b: str
    cut_a: int | None = None  # the token limit stopped this side after that many new tokens
    cut_b: int | None = None


@dataclass(frozen=True)
class ShownBattle:
    """A battle as its labeler sees it before voting: the prompt and two completions, left ("A") and right
    ("B"). Which version wrote which is in the store only, revealed by the vote."""

    id: int
    prompt: str
    left: str
    right: str
    left_cut: int | None = None
    right_cut: int | None = None


def pair_key(versions: Sequence[str]) -> tuple[str, str]:
    """Two different version names in sorted order: the pair's queue, whichever order they were picked in."""
    first, second = versions
    if not first or not second or first == second:
        raise ValueError(f"Pick two different versions for the arena, got {first!r} and {second!r}.")
    return (first, second) if first < second else (second, first)


class ArenaSampler:
    """Keeps up to `depth` battles ready for each pair of versions asked for, `batch_prompts` prompts at a time."""

    def __init__(
        self,
        store,
        server: PolicyBackend,
        load: Callable[[str], None],
        depth: int = 4,
        batch_prompts: int = 2,
        idle_s: float = 300.0,
        seed: int | None = None,
        while_sampling=None,
    ):
        if depth < 1 or batch_prompts < 1:
            raise ValueError(f"depth and batch_prompts must be >= 1, got {depth} and {batch_prompts}")
        if idle_s <= 0:
            raise ValueError(f"idle_s must be > 0, got {idle_s}")
        self.store, self.server, self.load = store, server, load
        self.depth, self.batch_prompts, self.idle_s = depth, batch_prompts, idle_s
        self.settings = SamplingSettings()
        self._queues: dict[tuple[str, str], deque[ReadyBattle]] = {}
        self._asked: dict[tuple[str, str], float] = {}  # pair -> monotonic time someone last asked for it
        self._errors: dict[tuple[str, str], str] = {}  # pair -> why its last batch failed
        self._in_flight: tuple[str, str] | None = None
        self._epoch = 0  # bumped by new settings: batches started before are dropped
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._rng = random.Random(seed)
        # a context held around each batch (the app: a round's process pauses meanwhile on a CPU)
        self.while_sampling = while_sampling or contextlib.nullcontext

    # -- public ---------------------------------------------------------------------------------------
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def waiting(self) -> bool:
        """Nothing being sampled and nothing to sample: every queue asked for is full, or nobody asked lately."""
        with self._cond:
            return self._in_flight is None and self._next_job() is None

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def ask(self, versions: Sequence[str]) -> tuple[str, str]:
        """Someone wants battles between `versions`: (re)start refilling their queue; returns the pair's key."""
        key = pair_key(versions)
        with self._cond:
            if self._stop:
                raise RuntimeError("The arena is closed: the app is stopping.")
            self._asked[key] = time.monotonic()
            if not self.running():
                self._thread = threading.Thread(target=self._run, name="arena-sampler", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return key

    def take(self, versions: Sequence[str], labeler: str, timeout: float = 300.0) -> ShownBattle:
        """The next battle between `versions`, recorded as handed to `labeler`, sides drawn at random. With the
        queue empty, wait for the batch being sampled; if the pair's last batch failed, sample one here (which
        raises the error, if it persists)."""
        key = self.ask(versions)
        with self._cond:
            self._cond.wait_for(
                lambda: self._queues.get(key) or self._stop or (key in self._errors and self._in_flight != key),
                timeout,
            )
            queue = self._queues.get(key)
            ready = queue.popleft() if queue else None
            a_left = self._rng.random() < 0.5
            self._cond.notify_all()
        if ready is None:
            batch = self._sample(key, 1)
            if not batch:
                raise RuntimeError(NO_PROMPTS)
            ready = batch[0]
        left, right = (ready.version_a, ready.version_b) if a_left else (ready.version_b, ready.version_a)
        battle_id = self.store.battles.add(
            ready.prompt_id, ready.version_a, ready.version_b, ready.generation_a, ready.generation_b, left, labeler
        )
        texts = [(ready.text_a, ready.cut_a), (ready.text_b, ready.cut_b)]
        (left_text, left_cut), (right_text, right_cut) = texts if a_left else texts[::-1]
        return ShownBattle(battle_id, ready.prompt, left_text, right_text, left_cut, right_cut)

    def set_settings(self, settings: SamplingSettings) -> None:
        """New battles sample with `settings`; queued ones sampled otherwise are dropped."""
        with self._cond:
            if settings != self.settings:
                self.settings = settings
                self._epoch += 1
                self._queues.clear()
                self._cond.notify_all()

    def queued(self, versions: Sequence[str]) -> int:
        with self._cond:
            return len(self._queues.get(pair_key(versions), ()))

    def last_error(self, versions: Sequence[str]) -> str | None:
        with self._cond:
            return self._errors.get(pair_key(versions))

    # -- background -----------------------------------------------------------------------------------
    def _next_job(self) -> tuple[tuple[str, str], int] | None:
        """The most recently asked-for pair whose queue has room for a batch, and how many prompts; None if no
        pair asked for within `idle_s` needs one (then the sampler sleeps until someone asks)."""
        now = time.monotonic()
        for key, asked in sorted(self._asked.items(), key=lambda item: -item[1]):
            if now - asked > self.idle_s:
                continue
            n = next_batch_prompts(len(self._queues.get(key, ())), self.depth, self.batch_prompts)
            if n > 0:
                return key, n
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._next_job() is not None)
                if self._stop:
                    return
                key, n = self._next_job()
                epoch, busy = self._epoch, {b.prompt_id for b in self._queues.get(key, ())}
                self._in_flight = key
            error = None
            try:
                ready = self._sample(key, n, exclude=busy)
                error = None if ready else NO_PROMPTS
            except ModelInterrupted:  # the app is stopping
                return
            except Exception as err:  # keep the app serving; the arena shows the error
                log.exception("arena sampling failed")
                ready, error = [], f"Arena sampling failed: {err}"
            with self._cond:
                self._in_flight = None
                if error is None:
                    self._errors.pop(key, None)
                else:
                    self._errors[key] = error
                if epoch == self._epoch:
                    self._queues.setdefault(key, deque()).extend(ready)
                self._cond.notify_all()  # wakes labelers waiting for a battle, or for the error to show them
                if error is not None:
                    self._cond.wait(timeout=2.0)

    def _sample(self, key: tuple[str, str], n_prompts: int, exclude=()) -> list[ReadyBattle]:
        """Answer up to `n_prompts` held-out prompts once by each version of `key`, stored as generations."""
        prompts = self.store.prompts.for_arena(n_prompts, exclude_ids=exclude)
        if not prompts:
            return []
        settings, texts = self.settings, [p.text for p in prompts]
        sides = []
        for version in key:  # one version at a time: the label sampler may take the model in between
            self.load(version)
            with self.while_sampling():
                sides.append([c[0] for c in self.server.generate(texts, n=1, settings=settings, version=version)])
        battles = []
        for prompt, a, b in zip(prompts, *sides, strict=True):
            ids, cuts = [], []
            for version, text in zip(key, (a, b), strict=True):
                cuts.append(getattr(text, "cut_at", None))
                ids.append(self.store.generations.add(prompt.id, version, str(text), settings.to_dict(), cuts[-1]))
            battles.append(ReadyBattle(prompt.id, prompt.text, *key, ids[0], str(a), ids[1], str(b), *cuts))
        return battles


# -- the arena as the UI sees it --------------------------------------------------------------------------
@dataclass(frozen=True)
class PairResult:
    """How `version` did against `opponent` in voted battles: decisive wins and losses, ties (a tie or "both
    bad"), and the win rate counting ties as half, with its interval (`rate.enough`: past the threshold)."""

    version: str
    opponent: str
    wins: int
    losses: int
    ties: int
    rate: WinRate


@dataclass(frozen=True)
class ArenaResults:
    """Every voted battle summed up: per pair of versions (the newer one first), strengths best first, the
    win-fraction matrix; `note` says why there is no leaderboard yet (then `strengths` is empty)."""

    battles: int
    pairs: list[PairResult]
    strengths: list[Strength]
    matrix: WinMatrix | None
    note: str | None = None


class Arena:
    """Blind battles between versions, as one object the UI and the tests call.

    arena = Arena.for_loop(loop, versions)
    battle = arena.next_battle(arena.latest_pair(), labeler="ana")
    shown = arena.vote(battle.id, "left", labeler="ana")       # the stored battle: which version was where
    arena.results()                                              # win rates, leaderboard, matrix
    """

    def __init__(
        self,
        store,
        versions: Callable[[], list[str]],
        sampler: ArenaSampler,
        min_battles: int = 10,
        bootstrap_rounds: int = 200,
    ):
        if min_battles < 1:
            raise ValueError(f"min_battles must be >= 1, got {min_battles}; 10 is the default")
        if bootstrap_rounds < 2:
            raise ValueError(
                f"bootstrap_rounds must be >= 2 for an interval, got {bootstrap_rounds}; 200 is the default"
            )
        self.store, self._versions, self.sampler = store, versions, sampler
        self.min_battles, self.bootstrap_rounds = min_battles, bootstrap_rounds
        self._results_lock = threading.Lock()
        self._cached: tuple[tuple, ArenaResults] | None = None

    @classmethod
    def for_loop(cls, loop, versions, seed: int | None = None, **options) -> Arena:
        """The arena beside a labeling `loop`: its store and server, its sampler's settings and pause; `versions`
        lists and loads the versions that battle (`list()`, `load(version)`: services/versions.py's)."""
        sampler = ArenaSampler(
            loop.store, loop.server, versions.load, seed=seed, while_sampling=loop.sampler.while_sampling
        )
        sampler.set_settings(loop.sampler.settings)
        return cls(loop.store, versions.list, sampler, **options)

    def versions(self) -> list[str]:
        """The versions that can battle: the base and the finished rounds, oldest first."""
        return self._versions()

    def latest_pair(self) -> tuple[str, str]:
        """The newest version and the one before it."""
        versions = self.versions()
        if len(versions) < 2:
            raise ValueError("The arena needs two versions and there is only the base: train a round first.")
        return versions[-1], versions[-2]

    def choose(self, versions: Sequence[str]) -> tuple[str, str]:
        """Check two picked versions and start sampling battles between them; returns them in sorted order."""
        known = self.versions()
        for version in versions:
            if version not in known:
                raise ValueError(f"Unknown version {version!r}; pick two of {', '.join(known)}.")
        return self.sampler.ask(versions)

    def next_battle(self, versions: Sequence[str], labeler: str) -> ShownBattle:
        """A battle between the two `versions` for `labeler` alone, sides at random, names hidden."""
        self.choose(versions)
        return self.sampler.take(versions, labeler_name(labeler))

    def vote(self, battle_id: int, side: str, labeler: str) -> ArenaBattle:
        """Store `labeler`'s vote on the side they saw ("left" = A, "right" = B, "tie", "both_bad"); returns the
        battle, whose `left_version` / `right_version` reveal the names."""
        return self.store.battles.vote(battle_id, side, labeler_name(labeler))

    def queued(self, versions: Sequence[str]) -> int:
        return self.sampler.queued(versions)

    def results(self) -> ArenaResults:
        """Win rates per pair, Bradley–Terry strengths with bootstrap intervals (the base anchored at 1000) and
        the win-fraction matrix, over every voted battle; recomputed only after new votes."""
        from evaluation import Battle, bootstrap_bradley_terry, win_matrix  # scikit-learn loads in ~2 s: not at start

        with self._results_lock:
            known = self.versions()
            key = (self.store.battles.count_voted(), tuple(known))
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
            battles = [Battle(b.version_a, b.version_b, b.winner) for b in self.store.battles.voted()]
            seen = {name for b in battles for name in (b.model_a, b.model_b)}
            models = [v for v in known if v in seen] + sorted(seen - set(known))
            if not battles:
                results = ArenaResults(0, [], [], None, "No votes yet: vote on a few battles.")
            else:
                matrix = win_matrix(battles, models)
                strengths, note = [], None
                try:
                    anchor = BASE_VERSION if BASE_VERSION in models else None
                    strengths = bootstrap_bradley_terry(
                        battles, models, rounds=self.bootstrap_rounds, seed=0, anchor=anchor
                    )
                except ValueError as err:
                    note = f"No leaderboard yet: {err}"
                results = ArenaResults(len(battles), self._pairs(matrix), strengths, matrix, note)
            self._cached = (key, results)
            return results

    def _pairs(self, matrix: WinMatrix) -> list[PairResult]:
        """Each pair that met, newest pairs first, from the newer version's side."""
        from evaluation import win_rate

        pairs = []
        for j in reversed(range(len(matrix.models))):
            for i in reversed(range(j)):
                if matrix.battles[i, j] == 0:
                    continue
                wins, losses, ties = int(matrix.wins[j, i]), int(matrix.wins[i, j]), int(matrix.ties[i, j])
                rate = win_rate(wins, losses, ties, min_battles=self.min_battles)
                pairs.append(PairResult(matrix.models[j], matrix.models[i], wins, losses, ties, rate))
        return pairs

    def close(self) -> None:
        self.sampler.stop()
