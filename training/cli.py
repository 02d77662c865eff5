"""Command-line options shared by the app and the training CLI, with the project's default paths."""

from __future__ import annotations

import argparse

from models import DEFAULT_MODEL_CACHE
from storage import DEFAULT_DB

DEFAULT_RUNS = "runs"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--db, --model, --model-cache, --runs and --device, as both `python app.py` and `python -m training` take."""
    parser.add_argument("--db", default=DEFAULT_DB, help="DuckDB file for prompts, labels and rounds")
    parser.add_argument("--model", default=None, help="Model folder or hub id (default: bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--model-cache", default=DEFAULT_MODEL_CACHE, help="Where the bundled model is converted once")
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="Folder for round_NNN/ adapters and lineage")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
