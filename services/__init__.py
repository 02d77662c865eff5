"""prefloop's services: the one door the UI (ui/) and the CLIs go through.

    services = open_services(ServiceConfig(db="data/prefloop.duckdb"))
    services.labeling.vote(pair, "left", "ana"); services.versions.serve("round_002", who="ada")
    services.rounds.start(DPOConfig()); services.arena.results(); services.status()

One module per use case: labeling.py (pairs, votes, prompts, guidelines, sampling settings), versions.py (which
exist, serving one, the candidate, comparing two), rounds.py (start, follow, cancel; a finished round serves),
arena.py, team.py (logins and roles), audit.py and exports.py; config.py holds `ServiceConfig` and root.py opens
everything once (`open_services`). Besides them this package names the records, settings and errors the UI
handles (a round's progress: `RoundStatus`), so the UI imports nothing else of prefloop's.
"""

from __future__ import annotations

from access import ROLES, AccessDenied, UsersError, labeler_name
from labeling.arena import ShownBattle
from labeling.prompts import PromptFileError
from labeling.sampler import Pair
from services.config import ServiceConfig
from services.exports import EXPORT_KINDS
from services.root import Services, Status, open_services
from serving import SamplingSettings
from storage import BASE_VERSION, Round, StoreError, round_version
from storage.labels import LABEL_USE
from training.config import COMPUTE_DTYPES, LOSS_TYPES, QUANTIZATION, REFERENCES, DPOConfig
from training.status import RoundStatus
from training.trainer import TrainingError

__all__ = [
    "BASE_VERSION",
    "COMPUTE_DTYPES",
    "EXPORT_KINDS",
    "LABEL_USE",
    "LOSS_TYPES",
    "QUANTIZATION",
    "REFERENCES",
    "ROLES",
    "AccessDenied",
    "DPOConfig",
    "Pair",
    "PromptFileError",
    "Round",
    "RoundStatus",
    "SamplingSettings",
    "ServiceConfig",
    "Services",
    "ShownBattle",
    "Status",
    "StoreError",
    "TrainingError",
    "UsersError",
    "labeler_name",
    "open_services",
    "round_version",
]
