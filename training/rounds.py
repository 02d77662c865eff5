"""Rounds with lineage: pick the pairs, train, record the round in the store. Used by the UI and the CLI alike.

    round_ = train_round(store, DPOConfig(), model="data/models/SmolLM2-135M-Instruct", runs_dir=Path("runs"))

`RoundRunner` runs `train_round` on one worker thread so the web handlers never wait for training, keeps
its live progress for the UI, accepts a cancel request, and refuses a second round while one runs.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from storage import BASE_VERSION, StoreError, round_version
from training.config import DPOConfig
from training.data import TrainingExample, TrainingPair
from training.round import RoundCancelled, TrainingError, run_round, training_items


def round_plan(store, config: DPOConfig) -> tuple[int | None, str | None, list[TrainingPair]]:
    """(parent round id, parent adapter folder, training items) for the next round.

    Continuing: the serving round's adapter trains on pairs no finished round used. Fresh: a new adapter
    from the base on every pair.
    """
    serving = store.get_serving()
    parent = None
    if config.continue_from_serving and serving != BASE_VERSION:
        parent = {r.version: r for r in store.list_rounds()}.get(serving)
        if parent is None:
            raise StoreError(f"The serving version {serving} is not a round of this database; serve base first.")
    rows = store.preference_pairs(unused_only=config.continue_from_serving)
    pairs: list = [TrainingPair(r.prompt, r.chosen, r.rejected, r.judgement_id) for r in rows]
    if config.loss_type == "kto":  # KTO also learns from "both bad" votes (two 👎) and single 👍 / 👎 ratings
        extra = store.unpaired_examples(unused_only=config.continue_from_serving)
        pairs += [TrainingExample(e.prompt, e.completion, e.desirable, e.judgement_id, e.rating_id) for e in extra]
    return (parent.id, parent.adapter_path, pairs) if parent else (None, None, pairs)


def train_round(
    store,
    config: DPOConfig,
    *,
    model: str,
    runs_dir: Path,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_start: Callable[[int, dict], None] | None = None,
    device: str | None = None,
):
    """Run one round and record it; returns the store's Round row. A failed round is recorded as failed.

    `on_start(round_id, run_args)` sees the round's id and the arguments `run_round` gets (picklable, so
    the CLI can hand them to the other processes of a multi-process round).
    """
    parent_id, parent_adapter, pairs = round_plan(store, config)
    training_items(pairs, config)  # refuse too few before recording a round
    round_id = store.start_round(config.to_dict(), parent_id, model)
    run_args = {
        "config": config,
        "pairs": pairs,
        "out_dir": Path(runs_dir) / round_version(round_id),
        "parent_adapter": parent_adapter,
        "lineage": {"round": round_id, "parent_round": parent_id},
    }
    if on_start is not None:
        on_start(round_id, run_args)
    try:
        result = run_round(**run_args, model=model, device=device, on_progress=on_progress, should_stop=should_stop)
    except RoundCancelled as err:
        store.fail_round(round_id, str(err), status="cancelled")
        raise
    except BaseException as err:
        store.fail_round(round_id, f"{type(err).__name__}: {err}")
        raise
    store.finish_round(
        round_id, str(result.adapter_dir), result.metrics, result.train_judgement_ids, result.train_rating_ids
    )
    return store.get_round(round_id)


def memory_note(metrics: dict) -> str:
    """What a round changed to fit its memory, in words ('' when nothing)."""
    metrics = metrics or {}
    if metrics.get("oom_retry"):
        return (
            f" It ran out of GPU memory once and trained again from the start with {metrics['micro_batch']} pair(s) "
            "per forward/backward pass and gradient checkpointing; same pairs per step."
        )
    plan = metrics.get("memory_plan") or {}
    if not plan.get("changed"):
        return ""
    how = f"{plan['micro_batch']} pair(s) per forward/backward pass"
    how += " with gradient checkpointing" if plan["gradient_checkpointing"] else ""
    return (
        f" To fit {plan['budget_gib']} GiB of memory it trained {how} (about {plan['estimated_gib']} GiB); "
        "same pairs per step."
    )


class RoundRunner:
    """One round at a time on a worker thread; `status()` is what the Train tab shows."""

    def __init__(self, store, model: str, runs_dir: Path, on_done: Callable, device: str | None = None) -> None:
        self.store, self.model, self.runs_dir, self.on_done, self.device = store, model, Path(runs_dir), on_done, device
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: dict = {"state": "idle", "history": [], "message": "", "round": None}

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, config: DPOConfig) -> None:
        with self._lock:
            if self.running():
                raise TrainingError("A round is already running: wait for it to finish or cancel it first.")
            training_items(round_plan(self.store, config)[2], config)
            self._cancel.clear()
            self._status = {"state": "running", "history": [], "message": "Starting…", "round": None}
            self._thread = threading.Thread(target=self._work, args=(config,), name="dpo-round", daemon=True)
            self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict:
        return dict(self._status, history=list(self._status["history"]))

    def _work(self, config: DPOConfig) -> None:
        status = self._status

        def progress(stats: dict) -> None:
            if status["history"] and stats["step"] <= status["history"][-1]["step"]:
                status["history"].clear()  # training started over (the out-of-memory retry): so does the plot
            status["history"].append(stats)
            status["message"] = f"step {stats['step']}/{stats['total_steps']} · loss {stats['loss']:.4f}"

        try:
            finished = train_round(
                self.store,
                config,
                model=self.model,
                runs_dir=self.runs_dir,
                device=self.device,
                on_progress=progress,
                should_stop=self._cancel.is_set,
                on_start=lambda rid, _: status.update(round=rid, message=f"{round_version(rid)}: preparing…"),
            )
            self.on_done(finished)
            status.update(state="done", message=f"{finished.version} is now serving.{memory_note(finished.metrics)}")
        except RoundCancelled as err:
            status.update(state="cancelled", message=str(err))
        except TrainingError as err:
            status.update(state="failed", message=str(err))
        except Exception as err:  # out of memory and the like: report, keep the previous policy
            traceback.print_exc()
            status.update(
                state="failed",
                message=f"Round failed ({type(err).__name__}: {err}); the previous policy keeps serving.",
            )
