"""The investigation record: a typed dataclass with a schema version, read back with migration.

A record holds decisions and small numbers only; models and scores stay in the
artefact ``Store`` and are found again from the settings recorded here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from ..errors import DeltaInfError

SCHEMA_VERSION = 2
"""Bump when a record's meaning changes, and add a step to ``MIGRATIONS``."""


def _approve_undecided(raw: dict) -> dict:
    """Schema 1 approved every candidate the analyst had not rejected; schema 2 stores approvals.
    A schema-1 record keeps what it showed: ``approved`` None means "every candidate not rejected"
    until the app next sees the candidates and writes them down."""
    return {**raw, "approved": None}


MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _approve_undecided}
"""``MIGRATIONS[v]`` turns a schema-``v`` record dict into a schema-``v + 1`` one."""

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{6,40}$")
"""Ids come from URLs (``?investigation=…``): anything else is refused before touching a path."""

STATUS_TEXT = {
    "draft": "no model yet", "model": "model ready", "affected": "affected image picked",
    "collapse": "influence collapse computed", "triage": "triage in progress", "unlearned": "unlearned",
}
"""A record's status in words (the status itself is derived from what the record holds)."""


class InvestigationError(DeltaInfError):
    """An investigation is missing, unreadable, or an imported list is malformed."""


class InvestigationNotFound(InvestigationError):
    """No investigation has this id (deleted, or never created on this machine)."""


def now() -> str:
    """UTC time as ISO 8601 (milliseconds): sorts as text and reads the same everywhere."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# -- the record ------------------------------------------------------------------------------
@dataclass
class AffectedImage:
    """One affected image.

    source: "triggered" (index into the attack's triggered test set), "test" (index into
        the test set) or "upload" (raw file bytes stored beside the record under ``sha256``).
    """

    source: str
    index: int | None = None
    sha256: str | None = None
    name: str | None = None


@dataclass
class UnlearnRun:
    """One unlearning run on the approved set and what it measured.

    config: the ``UnlearnConfig`` as a dict (method, epochs, params, seed).
    forget: the training indices removed. round: the detect→unlearn round it belongs to.
    """

    config: dict
    forget: list[int]
    clean_accuracy: float
    poison_success_rate: float | None = None
    round: int = 1
    seconds: float = 0.0
    gaussian: dict | None = None
    created: str = field(default_factory=now)

    @property
    def method(self) -> str:
        return str(self.config.get("method", "?"))


@dataclass
class Investigation:
    """Everything the analyst set and decided in one investigation (schema ``SCHEMA_VERSION``).

    scenario: ``Scenario.as_dict()`` of the model under investigation ({} before one exists).
    mode: "train" (trained here under a known attack) or "checkpoint" (an uploaded model).
    model_key / model: the pipeline's key of the model and its numbers (clean_accuracy,
        poison_success_rate, n_train, n_poisons), so a listing needs no recomputation.
    affected / affected_target: the picked images and the class they are explained as.
    collapse: the ``CollapseConfig`` dict last scored (None: not computed yet).
    transforms: the transformations toggled on. rule: the ``DetectConfig`` dict on Triage.
    added / approved / rejected: training indices added by hand / approved / rejected in
        triage; a candidate (flagged ∪ added ∪ prior) in neither list is undecided and is not
        unlearned. ``approved`` None: a schema-1 record, where every candidate not rejected
        was approved.
    round / prior: detect→unlearn round (SPEC §4 finding 5) and the sets removed before it.
    oracle: {"clean_accuracy", "poison_success_rate"} of the retrain without the true poisons.
    settings: the app's widget values (JSON scalars and lists) by widget key, so every
        control shows what it showed; the core never reads them.
    """

    id: str
    name: str
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    schema: int = SCHEMA_VERSION
    mode: str = "train"
    scenario: dict = field(default_factory=dict)
    checkpoint_name: str | None = None
    model_key: str | None = None
    model: dict = field(default_factory=dict)
    affected: list[AffectedImage] = field(default_factory=list)
    affected_target: int | None = None
    collapse: dict | None = None
    transforms: list[str] = field(default_factory=list)
    rule: dict = field(default_factory=dict)
    added: list[int] = field(default_factory=list)
    approved: list[int] | None = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    round: int = 1
    prior: list[int] = field(default_factory=list)
    unlearning: list[UnlearnRun] = field(default_factory=list)
    oracle: dict | None = None
    settings: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.unlearning:
            return "unlearned"
        if self.added or self.rejected or self.approved:
            return "triage"
        if self.collapse is not None:
            return "collapse"
        if self.affected:
            return "affected"
        return "model" if self.model_key else "draft"

    @property
    def dataset(self) -> str:
        data = self.scenario.get("data") or {}
        if data.get("data_dir"):
            return os.path.basename(os.path.normpath(str(data["data_dir"])))
        return str(data.get("dataset") or "")

    @property
    def model_name(self) -> str:
        return str((self.scenario.get("train") or {}).get("model") or "")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Any) -> Investigation:
        """Build a record from its JSON, migrating older schemas; ``ValueError`` when malformed."""
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        version = raw.get("schema")
        if not isinstance(version, int) or version < 1:
            raise ValueError("no schema version")
        if version > SCHEMA_VERSION:
            raise ValueError(f"written by a newer deltainf (schema {version}, this one reads ≤ {SCHEMA_VERSION})")
        while version < SCHEMA_VERSION:
            raw = MIGRATIONS[version](dict(raw))
            version += 1
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["schema"] = SCHEMA_VERSION
        for name, kinds in (("id", str), ("name", str), ("created", str), ("updated", str), ("mode", str),
                            ("scenario", dict), ("model", dict), ("rule", dict), ("settings", dict),
                            ("collapse", (dict, type(None))),
                            ("round", int)):
            if name in values and not isinstance(values[name], kinds):
                raise ValueError(f"field {name!r} has the wrong type")
        for name in ("id", "name"):
            if name not in values:
                raise ValueError(f"field {name!r} is missing")
        if not isinstance(values.get("transforms", []), list) or not all(
                isinstance(t, str) for t in values.get("transforms", [])):
            raise ValueError("field 'transforms' is not a list of names")
        values["affected"] = [AffectedImage(**_only(AffectedImage, a)) for a in values.get("affected") or []]
        values["unlearning"] = [UnlearnRun(**_only(UnlearnRun, u)) for u in values.get("unlearning") or []]
        for name in ("added", "rejected", "prior"):
            values[name] = _int_list(values.get(name) or [], name)
        if values.get("approved", []) is not None:
            values["approved"] = _int_list(values.get("approved") or [], "approved")
        for run in values["unlearning"]:
            run.forget = _int_list(run.forget, "forget")
            if not isinstance(run.config, dict):
                raise ValueError("an unlearning run's config is not an object")
        return cls(**values)


def _only(cls: type, raw: Any) -> dict:
    if not isinstance(raw, dict):
        raise ValueError(f"a {cls.__name__} entry is not an object")
    return {k: v for k, v in raw.items() if k in {f.name for f in fields(cls)}}


def _int_list(values: Any, name: str) -> list[int]:
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"field {name!r} is not a list of integers")
    return values
