"""What a round trains on, chosen from the store and written into the round's own folder.

    plan = plan_round(store, DPOConfig())                # parent round and training items; refuses too few
    job = write_job(runs / "round_003", plan, config, model="...", round_id=3)   # into runs/.round_003.tmp
    run_args = read_job(job)                             # in the round's process: no database needed

The folder (its file names: training/folder.py) holds `request.json` (config, base model, parent adapter,
lineage) and `input.jsonl` (the exact labels, in TRL's format, with their judgement / rating ids, and with
`arena_pairs` each row's source and battle id): a self-contained, re-runnable record of the round. The round's
process trains from it, adds the adapter, metrics and progress, and renames the folder into place
(`runs/round_003/`) when complete; the app then records the lineage in the store.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from storage import BASE_VERSION, StoreError
from storage.labels import PreferencePair, UnpairedExample, items_from_rows, kto_rows, training_items, trl_rows
from training.config import DPOConfig
from training.diagnose import DiagnosticSettings, prompts_key
from training.folder import INPUT_FILE, REQUEST_FILE, staging_dir
from training.gate import base_numbers
from training.trainer import enough_items


@dataclass(frozen=True)
class RoundPlan:
    """The round this one continues (None: a fresh adapter from the base) and what it trains on."""

    parent_round: int | None
    parent_adapter: str | None
    items: list[PreferencePair] | list[UnpairedExample]
    diagnostic_prompts: tuple[str, ...] = ()  # held-out prompts the round's diagnostics sample on
    diagnose_base: bool = True  # also measure the base (until one round has)


def plan_round(store, config: DPOConfig) -> RoundPlan:
    """Continuing: the serving round's adapter trains on labels no finished round used. Fresh: a new adapter from
    the base on every label. With `arena_pairs`, decisive arena votes join the pairs (after the labels), used or
    not by the same rule. Which labels a loss reads is `storage.labels.training_items`. Refuses too few."""
    serving = store.rounds.get_serving()
    parent = None
    if config.continue_from_serving and serving != BASE_VERSION:
        parent = {r.version: r for r in store.rounds.list()}.get(serving)
        if parent is None:
            raise StoreError(f"The serving version {serving} is not a round of this database; serve base first.")
    unused = config.continue_from_serving
    unpaired = store.training_data.unpaired_examples(unused_only=unused) if config.loss_type == "kto" else []
    pairs = store.training_data.preference_pairs(unused_only=unused)
    if config.arena_pairs:
        pairs += store.battles.preference_pairs(unused_only=unused)
    items = training_items(config.loss_type, pairs, unpaired)
    enough_items(items, config)
    prompts = diagnostic_prompts(store, config.diagnostic_prompts, items)
    # The base is measured again unless a round measured it (fluency included) on the same prompts and settings:
    # the health gate compares the round with the base prompt by prompt.
    done = [r.metrics for r in store.rounds.list() if r.status == "done"]
    key = prompts_key(prompts, DiagnosticSettings.of(config))
    measured = base_numbers({"prompts_key": key}, done) is not None
    if parent is None:
        return RoundPlan(None, None, items, prompts, not measured)
    return RoundPlan(parent.id, parent.adapter_path, items, prompts, not measured)


def diagnostic_prompts(store, n: int, items) -> tuple[str, ...]:
    """Up to `n` held-out prompts for the round's diagnostics, from the arena's pool (eval-only ones first, else
    prompts no finished round trained on: `store.prompts.for_arena`), the oldest first, so that rounds
    answer the same prompts while they stay held out and the base need not be measured again; leaving out the
    prompts this round trains on; in id order. Written into the round's folder, so its process needs no
    database."""
    if n == 0:
        return ()
    training = {item.prompt for item in items}
    found = [p for p in store.prompts.for_arena(n + len(training), by_id=True) if p.text not in training][:n]
    return tuple(p.text for p in sorted(found, key=lambda p: p.id))


def write_job(
    out_dir: Path, plan: RoundPlan, config: DPOConfig, *, model: str, round_id: int, device: str | None = None
) -> Path:
    """Write the round's request and input into its staging folder (replacing a leftover one); returns it."""
    job = staging_dir(Path(out_dir))
    shutil.rmtree(job, ignore_errors=True)
    job.mkdir(parents=True)
    pairs = [i for i in plan.items if isinstance(i, PreferencePair)]
    examples = [i for i in plan.items if isinstance(i, UnpairedExample)]
    arena = config.arena_pairs  # rows that may come from the arena say so, and which battle
    rows = kto_rows(pairs, examples, with_source=arena) if config.loss_type == "kto" else trl_rows(pairs, arena)
    request = {
        "config": config.to_dict(),
        "base_model": model,
        "parent_adapter": plan.parent_adapter,
        "lineage": {"round": round_id, "parent_round": plan.parent_round},
        "device": device,
        "out_dir": str(Path(out_dir).resolve()),
        "diagnostic_prompts": list(plan.diagnostic_prompts),
        "diagnose_base": plan.diagnose_base,
    }
    (job / REQUEST_FILE).write_text(json.dumps(request, indent=2))
    with open(job / INPUT_FILE, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return job


def read_job(job: Path) -> dict:
    """`run_round`'s arguments from a staging folder written by `write_job`."""
    job = Path(job)
    try:
        request = json.loads((job / REQUEST_FILE).read_text())
        with open(job / INPUT_FILE, encoding="utf-8") as f:
            items = items_from_rows(json.loads(line) for line in f if line.strip())
    except (OSError, ValueError, KeyError) as err:
        message = f"{job} is not a prepared round folder ({err}); start rounds from the app or the CLI."
        raise ValueError(message) from err
    return {
        "config": DPOConfig.from_dict(request["config"]),
        "pairs": items,
        "out_dir": Path(request["out_dir"]),
        "model": request["base_model"],
        "parent_adapter": request["parent_adapter"],
        "lineage": request["lineage"],
        "device": request["device"],
        "diagnostic_prompts": request.get("diagnostic_prompts", []),
        "diagnose_base": request.get("diagnose_base", True),
    }
