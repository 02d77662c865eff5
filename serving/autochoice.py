"""Which engine `--backend auto` serves with on a CPU that multiplies bf16 natively: measured there, once per
model, CPU and engine versions, not assumed.

Without native bf16 the choice is onnx (fp32, 2.05x the eager backend's tok/s on a 2-core AVX2 CPU,
docs/benchmarks.md). With it the eager backend runs bf16 and onnx fp32, and either can win: one run on an AMX
CPU gave onnx 227 tok/s against eager bf16's 121 with the app's settings. So the first start there times both
on the sampler's own batch shape and serves with the faster; the verdict, its figures and what it holds for are
kept in `<model cache>/backend_choice.json` (one record per model, CPU and engine versions), and later starts
read it instead of measuring again.

    server, record = measured_backend(model, cache_dir, {"onnx": open_onnx, "eager": open_eager})
    record  # {"backend": "onnx", "tok_s": {"onnx": 227.0, "eager": 121.0}, "key": {...}, "measured_at": ...}

One engine is in memory at a time: each is opened, timed and closed, and the faster one opened again (the onnx
export is cached, so that costs a load, not an export).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from serving.base import PolicyBackend
from serving.sampling import SamplingSettings

CHOICE_FILE = "backend_choice.json"
KEPT_RECORDS = 16  # the newest verdicts kept: one per model, CPU and engine versions seen
PROBE_PROMPTS = (
    "Explain why the sky is blue in two sentences.",
    "Give three tips for a good night's sleep.",
    "Write a short note thanking a colleague for their help.",
    "What is the difference between a list and a tuple in Python?",
    "Suggest a name for a friendly robot vacuum.",
    "How do I boil an egg?",
    "Describe autumn in one paragraph.",
    "List four uses for baking soda.",
)  # eight prompts, two completions each: the sampler's batch (labeling/sampler.py)
PROBE_TOKENS = 48


def cpu_identity() -> dict:
    """What a measured choice holds for: the CPU's model name, its core count and bf16 support."""
    from models import cpu_has_native_bf16

    name = platform.processor()
    try:
        name = next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), name
        )
    except OSError:
        pass
    return {"cpu": name, "cores": os.cpu_count(), "native_bf16": cpu_has_native_bf16()}


def choice_key(model: str) -> dict:
    """The model's weights (fingerprint), the CPU and the engines' versions (None: not installed): a change to
    any measures again."""
    from serving.onnx_backend import _fingerprint

    versions = {name: _version(name) for name in ("torch", "onnxruntime_genai")}
    return {"model": _fingerprint(model)} | cpu_identity() | versions


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return None


def tokens_per_second(server: PolicyBackend, n: int = 2, max_new_tokens: int = PROBE_TOKENS) -> float:
    """New tokens a second over one sampler-sized batch (8 prompts x `n`), after a short warm-up batch."""
    prompts = list(PROBE_PROMPTS)
    server.generate_tokens(prompts, n, SamplingSettings(max_new_tokens=4, seed=0))
    started = time.perf_counter()
    rows = server.generate_tokens(prompts, n, SamplingSettings(max_new_tokens=max_new_tokens, seed=0))
    seconds = time.perf_counter() - started
    return sum(len(ids) for per_prompt in rows for ids in per_prompt) / max(seconds, 1e-9)


def _records(cache_dir: str | Path) -> list[dict]:
    try:
        records = json.loads((Path(cache_dir) / CHOICE_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def read_choice(cache_dir: str | Path, key: Mapping) -> dict | None:
    """The stored verdict for `key`, or None if there is none (or the file cannot be read)."""
    return next((r for r in _records(cache_dir) if r.get("key") == dict(key)), None)


def store_choice(cache_dir: str | Path, record: dict) -> Path:
    """Keep `record`, replacing one for the same key (and the oldest beyond KEPT_RECORDS); written whole to a
    temporary file first."""
    path = Path(cache_dir) / CHOICE_FILE
    records = [r for r in _records(cache_dir) if r.get("key") != record["key"]][-(KEPT_RECORDS - 1) :] + [record]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2))
    tmp.replace(path)
    return path


def measured_backend(
    model: str,
    cache_dir: str | Path,
    openers: Mapping[str, Callable[[], PolicyBackend]],
    key: Mapping | None = None,
    probe_tokens: int = PROBE_TOKENS,
) -> tuple[PolicyBackend, dict]:
    """(server, record): the engine of `openers` (name -> opens it) that samples fastest here, as stored for
    `key` (default: `choice_key(model)`) or measured now and stored. An engine that fails to open is left out,
    with the reason in the record, and the last one left when all others failed serves untimed; if the stored
    winner fails to open, the others are measured."""
    key = dict(key if key is not None else choice_key(model))
    record = read_choice(cache_dir, key)
    if record is not None and record["backend"] in openers:
        try:
            return openers[record["backend"]](), record
        except (ImportError, ValueError) as err:
            print(f"prefloop: the stored backend {record['backend']} does not open ({err}); measuring again",
                  file=sys.stderr)  # fmt: skip
    print(f"prefloop: timing the {' and '.join(openers)} backends on this CPU, once…", file=sys.stderr, flush=True)
    tok_s, failed = {}, {}
    for index, (name, opener) in enumerate(openers.items()):
        try:
            server = opener()
        except (ImportError, ValueError) as err:
            failed[name] = str(err)
            continue
        if index == len(openers) - 1 and not tok_s:  # nothing to compare it with: serve it as it is
            record = {"backend": name, "tok_s": {}, "failed": failed, "key": key, "measured_at": _now()}
            store_choice(cache_dir, record)
            print(f"prefloop: serving with {name}, the only backend that opens here", file=sys.stderr)
            return server, record
        try:
            tok_s[name] = round(tokens_per_second(server, max_new_tokens=probe_tokens), 1)
        except RuntimeError as err:  # opened, but fails to generate here
            failed[name] = str(err)
        finally:
            close = getattr(server, "close", None)  # the eager engine lets go of its weights once unreferenced
            if close is not None:
                close()
            del server
    if not tok_s:
        raise ValueError(f"No backend could be opened: {failed}. Pick one with --backend.")
    best = max(tok_s, key=tok_s.__getitem__)
    record = {"backend": best, "tok_s": tok_s, "failed": failed, "key": key, "measured_at": _now()}
    path = store_choice(cache_dir, record)
    print(f"prefloop: serving with {best} ({', '.join(f'{k} {v} tok/s' for k, v in tok_s.items())}); "
          f"stored in {path}", file=sys.stderr)  # fmt: skip
    return openers[best](), record


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
