"""A finished round's adapter, checked before it serves: the checksum recorded when its round finished, and
weights that are all finite. Damaged bytes inside the weights file (its header intact) load without complaint
and sample NaN / inf; this is what stops them.

    digest = adapter_digest("runs/round_003/adapter")        # recorded with the round when it finishes
    check_adapter("runs/round_003/adapter", digest)          # AdapterDamaged unless the files are as recorded
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

WEIGHTS_FILE = "adapter_model.safetensors"
CHECKED_FILES = ("adapter_config.json", WEIGHTS_FILE)  # what peft reads to load it


class AdapterDamaged(ValueError):
    """An adapter's files differ from what its round wrote, or hold weights that are not finite."""


def adapter_digest(path: str | os.PathLike) -> str:
    """SHA-256 over the adapter's config and weights files (names and bytes)."""
    digest = hashlib.sha256()
    for name in CHECKED_FILES:
        digest.update(name.encode() + b"\0")
        with open(Path(path) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_adapter(path: str | os.PathLike, digest: str | None, version: str = "this round") -> None:
    """Raise AdapterDamaged unless the files are there, match `digest` (None: recorded before checksums were)
    and every weight is finite."""
    advice = "Serve another version from the Train tab, or train the round again."
    missing = [name for name in CHECKED_FILES if not (Path(path) / name).is_file()]
    if missing:
        raise AdapterDamaged(
            f"The adapter of {version} is missing from {path} (no {', '.join(missing)}): its folder was moved or "
            f"deleted. Put it back where it was, or serve another version from the Train tab."
        )
    if digest is not None and adapter_digest(path) != digest:
        raise AdapterDamaged(
            f"The adapter of {version} in {path} is not the one its round wrote (its checksum differs): it was "
            f"changed or damaged since. {advice}"
        )
    import torch
    from safetensors.torch import load_file

    try:
        weights = load_file(str(Path(path) / WEIGHTS_FILE))
    except Exception as err:  # safetensors' own error kinds for a damaged header
        raise AdapterDamaged(f"The adapter of {version} in {path} cannot be read ({err}). {advice}") from err
    broken = [name for name, tensor in weights.items() if not torch.isfinite(tensor).all()]
    if broken:
        raise AdapterDamaged(
            f"The adapter of {version} in {path} holds weights that are not finite (NaN or inf) in {len(broken)} "
            f"of {len(weights)} tensors, e.g. {broken[0]}. {advice}"
        )
