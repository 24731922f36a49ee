"""Investigations saved on disk, so a reload, a second tab or a server restart reopens one.

One JSON file per investigation, ``<root>/<id>.json`` (root: ``<cache>/investigations``),
plus its uploaded affected images as raw bytes named by their SHA-256 in
``<root>/<id>.uploads/``. A record holds what the analyst *decided* (settings, picked
images, transformations, rule, approve/reject, unlearning runs and their numbers); the
heavy results (models, scores) stay in the artefact ``Store`` and are found again
from these settings, so a record stays a few kilobytes.

Why the locking: two browser sessions may write the same record. Every write goes to
a temporary file that replaces the record in one ``os.replace`` (a reader sees the
old or the new file, never half of one), under a per-record ``filelock`` so that
``update``'s read-modify-write of one session cannot drop another's change. Different
records never share a lock. A corrupt or foreign file is reported as one sentence and
listed as unreadable; it never hides the others.
"""

from __future__ import annotations

from .approved import ApprovedList, approved_csv, approved_json, decisions_for, read_approved_list
from .record import (
    SCHEMA_VERSION,
    STATUS_TEXT,
    AffectedImage,
    Investigation,
    InvestigationError,
    InvestigationNotFound,
    UnlearnRun,
)
from .store import InvestigationStore, InvestigationSummary, default_name

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_TEXT",
    "AffectedImage",
    "ApprovedList",
    "Investigation",
    "InvestigationError",
    "InvestigationNotFound",
    "InvestigationStore",
    "InvestigationSummary",
    "UnlearnRun",
    "approved_csv",
    "approved_json",
    "decisions_for",
    "default_name",
    "read_approved_list",
]
