"""A round's folder: its file names, its staging name, the progress events its process writes, and its result.

    job = staging_dir(runs / "round_003")              # runs/.round_003.tmp while the round is written
    write_event(f, step_event(stats)); read_result(runs / "round_003")

A round is planned into `runs/.round_NNN.tmp` (REQUEST_FILE, INPUT_FILE: training/plan.py), its process appends
one JSON event a line to PROGRESS_FILE and its output to LOG_FILE, the app records the process group in PID_FILE,
and the trainer adds ADAPTER_DIR, CONFIG_FILE, METRICS_FILE, JUDGEMENTS_FILE (and DIAGNOSTICS_FILE) before
renaming the folder to `runs/round_NNN`. This module is that contract; nothing else spells it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

REQUEST_FILE, INPUT_FILE = "request.json", "input.jsonl"  # what to train: config, lineage, the exact labels
PROGRESS_FILE, LOG_FILE, PID_FILE = "progress.jsonl", "log.txt", "pid"  # while it runs
ADAPTER_DIR, CONFIG_FILE, METRICS_FILE = "adapter", "config.json", "metrics.json"  # what it made
JUDGEMENTS_FILE, DIAGNOSTICS_FILE = "judgements.json", "diagnostics.json"
STAGING_GLOB = ".round_*.tmp"  # every staging folder in a runs folder (see staging_dir)

# The events in PROGRESS_FILE, by their "event" field:
STEP = "step"  # an optimizer step's metrics: step, total_steps, epoch, seconds, loss, margin, accuracy...
PHASE = "phase"  # a phase's progress: phase (its name), done, total, seconds
STAGE = "stage"  # what the round does now, in words: message
FAILED = "failed"  # it stopped with an error: message (the Train tab shows it as it is)
CANCELLED = "cancelled"  # it stopped on a signal: message, signal (its name, or None)
ENDINGS = (FAILED, CANCELLED)


def staging_dir(out_dir: Path) -> Path:
    """Where a round is written before it is complete: `.round_NNN.tmp` beside `round_NNN`."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.tmp")


def step_event(stats: dict) -> dict:
    return {"event": STEP} | stats


def phase_event(name: str, done: int, total: int | None, seconds: float) -> dict:
    return {"event": PHASE, "phase": name, "done": done, "total": total, "seconds": seconds}


def stage_event(message: str) -> dict:
    return {"event": STAGE, "message": message}


def failed_event(message: str) -> dict:
    return {"event": FAILED, "message": message}


def cancelled_event(message: str, signal: str | None) -> dict:
    return {"event": CANCELLED, "message": message, "signal": signal}


def write_event(progress, event: dict) -> None:
    """Append one event to an open PROGRESS_FILE, at once (the app reads it as it grows)."""
    progress.write(json.dumps(event) + "\n")
    progress.flush()


@dataclass(frozen=True)
class RoundFiles:
    """What a finished round's folder holds for the store: its metrics, the DPO config it trained with, the
    label ids ({"train", "heldout", "ratings": {...}, "battles": {...}}) and the adapter's absolute path."""

    metrics: dict
    config: dict
    label_ids: dict
    adapter: Path


def read_result(out_dir: Path) -> RoundFiles:
    """The result files of the finished round in `out_dir` (written by `write_result`)."""
    out_dir = Path(out_dir)
    return RoundFiles(
        metrics=json.loads((out_dir / METRICS_FILE).read_text()),
        config=json.loads((out_dir / CONFIG_FILE).read_text())["dpo"],
        label_ids=json.loads((out_dir / JUDGEMENTS_FILE).read_text()),
        adapter=(out_dir / ADAPTER_DIR).resolve(),  # the store works from any folder the app starts in
    )


def write_result(folder: Path, record: dict, metrics: dict, label_ids: dict, samples: dict | None = None) -> None:
    """Write the result files (but the adapter) into `folder`: the record as CONFIG_FILE, the metrics, the label
    ids, and `samples` (the diagnostic prompts and answers) as DIAGNOSTICS_FILE when there are some."""
    files = [(CONFIG_FILE, record), (METRICS_FILE, metrics), (JUDGEMENTS_FILE, label_ids)]
    for name, payload in files + ([(DIAGNOSTICS_FILE, samples)] if samples else []):
        (Path(folder) / name).write_text(json.dumps(payload, indent=2, default=str, ensure_ascii=False))
