"""Command-line options shared by the app and the training CLI: the project's default paths, and flags generated
from a typed config dataclass (one per field, with its default and help).

    add_common_arguments(parser)                        # --db, --model, --model-cache, --runs, --device
    add_config_arguments(parser, DPOConfig, skip={"continue_from_serving"})
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Collection

from models import DEFAULT_MODEL_CACHE
from storage import DEFAULT_DB

DEFAULT_RUNS = "runs"
COMMON_FIELDS = ("db", "model", "model_cache", "runs", "device")  # the flags add_common_arguments adds
FLAG_TYPES = {"int": int, "int | None": int, "float": float, "float | None": float, "str": str, "str | None": str}


def positive_int(text: str) -> int:
    """argparse type for counts: refuses 0, negatives and non-numbers before any weights load."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--db, --model, --model-cache, --runs and --device, as both `python app.py` and `python -m training` take."""
    parser.add_argument("--db", default=DEFAULT_DB, help="DuckDB file for prompts, labels and rounds")
    parser.add_argument("--model", default=None, help="Model folder or hub id (default: bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--model-cache", default=DEFAULT_MODEL_CACHE, help="Where the bundled model is converted once")
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="Folder for round_NNN/ adapters and lineage")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


def add_config_arguments(parser: argparse.ArgumentParser, config: type, skip: Collection[str] = ()) -> None:
    """One flag per field of the dataclass `config` (but those in `skip`): --field-name, with the field's default
    and its metadata's "help"; a bool becomes --name / --no-name, a tuple of names takes one or more. A field's
    metadata may also give "choices" and an argparse "type" (e.g. `positive_int`)."""
    for field in dataclasses.fields(config):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} (default: {field.default})"
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        elif str(field.type) == "tuple[str, ...]":
            parser.add_argument(flag, nargs="+", default=list(field.default), help=help_text)
        else:
            kind = field.metadata.get("type", FLAG_TYPES[str(field.type)])
            choices = field.metadata.get("choices")
            parser.add_argument(flag, type=kind, default=field.default, choices=choices, help=help_text)
