"""The label contract: which label feeds which loss, decided here and nowhere else.

| label                      | DPO, IPO, hinge                         | KTO                               |
|----------------------------|-----------------------------------------|-----------------------------------|
| left / right               | a pair: chosen = picked, rejected = other | one 👍 (picked) and one 👎 (other) |
| both bad                   | not trained on                          | two 👎                             |
| 👍 / 👎 on one completion   | not trained on                          | one 👍 / 👎                        |
| tie, skip                  | stored, never trained on                | the same                          |
| arena battle won by a side | a pair (rounds with `arena_pairs` only) | one 👍 and one 👎 (the same)       |
| arena tie / both bad       | not trained on                          | not trained on                    |

Export and training both go through `training_items` / `trl_rows` / `kto_rows`, so what a user exports is
what a round trains on. Every row also says how its judgement's pair was chosen (`selection`: "random", a
strategy's name, "control", "edit"; labeling/selection.py), None for ratings and arena votes. A round's input
file holds these rows, and `items_from_rows` reads them back. Rows written `with_source` also say where each
came from: `source` "label" (a judgement or rating) or "arena" (a battle, by `battle_id`); a round that may
train on arena votes and an export that includes them write these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CHOICES = ("left", "right", "tie", "both_bad", "skip")
# Only these judgements become (chosen, rejected) pairs; ties, both-bad and skips are stored but never paired.
PAIR_CHOICES = ("left", "right")
# For unpaired losses (KTO) a "both bad" vote is two 👎: each completion on its own is undesirable.
BOTH_BAD_CHOICES = ("both_bad",)
# A rating is a 👍 or 👎 on one completion judged on its own; only unpaired losses (KTO) train on ratings.
RATINGS = ("up", "down")
UNPAIRED_LOSSES = ("kto",)  # losses that learn from single 👍 / 👎 completions rather than pairs

LABEL_USE = (
    "**Which loss each label feeds:** *left* / *right* → a DPO pair (chosen / rejected) for every loss; the "
    "*kto* loss reads it as one 👍 and one 👎. *Both bad* → two 👎, *kto* only. *Rate one* mode's 👍 / 👎 on a "
    "single completion → *kto* only. *Tie* is stored but trains nothing; *skip* records that the pair was seen."
)


@dataclass(frozen=True)
class PreferencePair:
    """A left/right vote as training text: the picked completion is `chosen`, the other `rejected`; from a
    judgement (`judgement_id`) or a decisive arena battle (`battle_id`: the winner's completion is chosen)."""

    prompt: str
    chosen: str
    rejected: str
    judgement_id: int | None = None
    battle_id: int | None = None
    selection: str | None = None  # how the judgement's pair was chosen; None for an arena battle


@dataclass(frozen=True)
class UnpairedExample:
    """One completion with a 👍 (`desirable`) or 👎, for unpaired losses such as KTO; from a judgement (a pair's
    side, or "both bad") or from a single rating (`rating_id`)."""

    prompt: str
    completion: str
    desirable: bool
    judgement_id: int | None = None
    rating_id: int | None = None
    battle_id: int | None = None
    selection: str | None = None  # how the judgement's pair was chosen; None for a rating or an arena battle


def source(item: PreferencePair | UnpairedExample) -> str:
    """Where a training item came from: "arena" (a battle's vote) or "label" (a judgement or a rating)."""
    return "label" if item.battle_id is None else "arena"


def as_unpaired(items: Iterable[PreferencePair | UnpairedExample]) -> list[UnpairedExample]:
    """A preference pair gives one 👍 (chosen) and one 👎 (rejected), in that order; single examples pass through."""
    out: list[UnpairedExample] = []
    for item in items:
        if isinstance(item, UnpairedExample):
            out.append(item)
        else:
            ids = {"battle_id": item.battle_id, "selection": item.selection}
            out.append(UnpairedExample(item.prompt, item.chosen, True, item.judgement_id, **ids))
            out.append(UnpairedExample(item.prompt, item.rejected, False, item.judgement_id, **ids))
    return out


def training_items(
    loss_type: str, pairs: Sequence[PreferencePair], unpaired: Sequence[UnpairedExample] = ()
) -> list[PreferencePair] | list[UnpairedExample]:
    """What a round with `loss_type` trains on: the pairs, or for KTO every label as 👍 / 👎 examples."""
    if loss_type in UNPAIRED_LOSSES:
        return as_unpaired([*pairs, *unpaired])
    return list(pairs)


def trl_rows(pairs: Sequence[PreferencePair], with_source: bool = False) -> list[dict]:
    """The pairs as rows of TRL's conversational preference format (plus the judgement id and how its pair was
    chosen), in the given order; `with_source`: each row also says where it came from (`source`, `battle_id`)."""
    return [
        {
            "prompt": [{"role": "user", "content": pair.prompt}],
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
            "judgement_id": pair.judgement_id,
            "selection": pair.selection,
        }
        | (_source_columns(pair) if with_source else {})
        for pair in pairs
    ]


def _source_columns(item: PreferencePair | UnpairedExample) -> dict:
    return {"source": source(item), "battle_id": item.battle_id}


def kto_rows(
    pairs: Sequence[PreferencePair], examples: Sequence[UnpairedExample] = (), with_source: bool = False
) -> list[dict]:
    """Rows of TRL's conversational unpaired format: each pair as its chosen (👍) then its rejected (👎)
    completion, then the single-completion examples, in the given order; `with_source` as for `trl_rows`."""
    return [
        {
            "prompt": [{"role": "user", "content": e.prompt}],
            "completion": [{"role": "assistant", "content": e.completion}],
            "label": e.desirable,
            "judgement_id": e.judgement_id,
            "rating_id": e.rating_id,
            "selection": e.selection,
        }
        | (_source_columns(e) if with_source else {})
        for e in as_unpaired([*pairs, *examples])
    ]


def items_from_rows(rows: Iterable[dict]) -> list[PreferencePair | UnpairedExample]:
    """`trl_rows` / `kto_rows` rows back as training items (what a round's input file holds)."""

    def content(messages: list[dict], role: str) -> str:
        if len(messages) != 1 or messages[0].get("role") != role:
            raise ValueError(f"expected one {role} message, got {messages!r}")
        return messages[0]["content"]

    items: list[PreferencePair | UnpairedExample] = []
    for row in rows:
        prompt = content(row["prompt"], "user")
        if "chosen" in row:
            chosen, rejected = content(row["chosen"], "assistant"), content(row["rejected"], "assistant")
            ids = row.get("judgement_id"), row.get("battle_id"), row.get("selection")
            items.append(PreferencePair(prompt, chosen, rejected, *ids))
        else:
            completion = content(row["completion"], "assistant")
            ids = row.get("judgement_id"), row.get("rating_id"), row.get("battle_id"), row.get("selection")
            items.append(UnpairedExample(prompt, completion, bool(row["label"]), *ids))
    return items
