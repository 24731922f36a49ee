"""Records on disk: one JSON file per investigation, written atomically under a per-record lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from filelock import FileLock, Timeout

from .record import (
    ID_PATTERN,
    AffectedImage,
    Investigation,
    InvestigationError,
    InvestigationNotFound,
    now,
)

ID_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""Ids are 8 of these (no 0/O, 1/l/I look-alikes): short in a URL, readable aloud, ~10¹⁴ of them."""
LOCK_TIMEOUT_S = 10.0
"""A session waits this long for another one's write of the same record (writes take milliseconds)."""


@dataclass(frozen=True)
class InvestigationSummary:
    """One line of the Scenario page's list; ``error`` is set (one sentence) for an unreadable file."""

    id: str
    name: str
    created: str
    updated: str
    dataset: str
    model: str
    status: str
    error: str | None = None


class InvestigationStore:
    """Create, load, save, list, rename and delete investigation records under one folder."""

    def __init__(self, root: str | None = None) -> None:
        if root is None:
            from ..store import default_cache_dir

            root = os.path.join(default_cache_dir(), "investigations")
        self.root = root
        os.makedirs(self.root, exist_ok=True)

    # paths -----------------------------------------------------------------------------------
    def _check(self, inv_id: str) -> str:
        if not isinstance(inv_id, str) or not ID_PATTERN.match(inv_id):
            raise InvestigationNotFound(f"{str(inv_id)[:60]!r} is not an investigation id")
        return inv_id

    def path(self, inv_id: str) -> str:
        return os.path.join(self.root, f"{self._check(inv_id)}.json")

    def uploads_dir(self, inv_id: str) -> str:
        return os.path.join(self.root, f"{self._check(inv_id)}.uploads")

    @contextlib.contextmanager
    def _locked(self, inv_id: str) -> Iterator[None]:
        lock = FileLock(os.path.join(self.root, f"{self._check(inv_id)}.lock"), timeout=LOCK_TIMEOUT_S)
        try:
            with lock:
                yield
        except Timeout:
            raise InvestigationError(f"investigation {inv_id} is busy (another session holds it); "
                                     "try again in a moment") from None

    def _write(self, record: Investigation, exclusive: bool = False) -> None:
        """Write a temporary file in full, then move it into place in one step.

        exclusive: only if no record has this id yet (``os.link`` refuses to overwrite),
        which claims a new id even against another process creating at the same instant.
        """
        tmp = os.path.join(self.root, f".{record.id}.{secrets.token_hex(4)}.tmp")
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "w", encoding="utf-8") as fh:
                json.dump(record.to_json(), fh, indent=1, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            if exclusive:
                _link_new(tmp, self.path(record.id))
            else:
                os.replace(tmp, self.path(record.id))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _read(self, inv_id: str) -> Investigation:
        path = self.path(inv_id)
        try:
            with open(path, encoding="utf-8") as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            raise InvestigationNotFound(f"there is no investigation {inv_id} (deleted, or made on another "
                                        "machine); start a new one on the Scenario page") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InvestigationError(f"investigation {inv_id} cannot be read ({_reason(err)}); "
                                     f"its file is {path}") from None
        try:
            record = Investigation.from_json(raw)
        except (TypeError, ValueError, KeyError) as err:
            raise InvestigationError(f"investigation {inv_id} is damaged ({_reason(err)}); "
                                     f"its file is {path}") from None
        if record.id != inv_id:
            raise InvestigationError(f"investigation file {path} holds id {record.id!r}, not {inv_id!r}")
        return record

    # API -------------------------------------------------------------------------------------
    def create(self, name: str | None = None, **values: Any) -> str:
        """A new record (fields of ``Investigation`` may be given); returns its short URL-safe id."""
        record = Investigation(id="new-record", name=(name or "").strip() or default_name(values.get("scenario")),
                               **values)
        for _ in range(20):
            record.id = "".join(secrets.choice(ID_ALPHABET) for _ in range(8))
            try:
                self._write(record, exclusive=True)
            except FileExistsError:
                continue
            return record.id
        raise InvestigationError(f"could not find a free investigation id in {self.root}")

    def load(self, inv_id: str) -> Investigation:
        return self._read(inv_id)

    def exists(self, inv_id: str) -> bool:
        try:
            return os.path.isfile(self.path(inv_id))
        except InvestigationNotFound:
            return False

    def save(self, record: Investigation) -> Investigation:
        """Write the whole record (last writer wins); stamps ``updated``."""
        record.updated = now()
        with self._locked(record.id):
            self._write(record)
        return record

    def update(self, inv_id: str, change: Callable[[Investigation], Investigation | None]) -> Investigation:
        """Read, change and write one record under its lock, so concurrent changes all land."""
        with self._locked(inv_id):
            record = self._read(inv_id)
            record = change(record) or record
            record.updated = now()
            self._write(record)
        return record

    def rename(self, inv_id: str, name: str) -> Investigation:
        name = (name or "").strip()
        if not name:
            raise InvestigationError("an investigation needs a name")

        def _rename(rec: Investigation) -> None:
            rec.name = name[:200]

        return self.update(inv_id, _rename)

    def delete(self, inv_id: str) -> None:
        """Remove the record and its uploads (deleting a missing one is an error, not silence)."""
        with self._locked(inv_id):
            path = self.path(inv_id)
            if not os.path.exists(path):
                raise InvestigationNotFound(f"there is no investigation {inv_id} to delete")
            os.unlink(path)
            shutil.rmtree(self.uploads_dir(inv_id), ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.root, f"{inv_id}.lock"))

    def list(self) -> list[InvestigationSummary]:
        """Every record, most recently updated first; unreadable ones carry their one-line ``error``."""
        out = []
        for entry in os.scandir(self.root):
            inv_id = entry.name[:-5]
            if not entry.name.endswith(".json") or not ID_PATTERN.match(inv_id):
                continue
            try:
                rec = self._read(inv_id)
            except InvestigationNotFound:
                continue  # deleted while listing
            except InvestigationError as err:
                stamp = _mtime(entry.path)
                out.append(InvestigationSummary(inv_id, inv_id, stamp, stamp, "", "", "unreadable", str(err)))
                continue
            out.append(InvestigationSummary(rec.id, rec.name, rec.created, rec.updated, rec.dataset,
                                            rec.model_name, rec.status))
        return sorted(out, key=lambda s: (s.updated, s.created, s.id), reverse=True)

    # uploads ---------------------------------------------------------------------------------
    def put_upload(self, inv_id: str, data: bytes, name: str) -> AffectedImage:
        """Store an uploaded image's bytes beside the record; returns its ``AffectedImage`` entry."""
        if not self.exists(inv_id):
            raise InvestigationNotFound(f"there is no investigation {inv_id}")
        sha = hashlib.sha256(data).hexdigest()
        folder = self.uploads_dir(inv_id)
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, sha)
        if not os.path.exists(target):
            tmp = os.path.join(folder, f".{sha[:16]}.{secrets.token_hex(4)}.tmp")
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        return AffectedImage(source="upload", sha256=sha, name=os.path.basename(name or sha[:12]))

    def upload_bytes(self, inv_id: str, sha: str) -> bytes:
        """The bytes of a stored upload, checked against their hash."""
        if not re.fullmatch(r"[0-9a-f]{64}", str(sha)):
            raise InvestigationError(f"{str(sha)[:70]!r} is not an upload's SHA-256")
        try:
            with open(os.path.join(self.uploads_dir(inv_id), sha), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise InvestigationError(f"investigation {inv_id} lost its uploaded image {sha[:12]}; "
                                     "upload it again") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise InvestigationError(f"investigation {inv_id}'s uploaded image {sha[:12]} is damaged; upload it again")
        return data


def _link_new(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` only if ``dst`` does not exist (``FileExistsError`` otherwise)."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: claim the name, then fill it
        os.close(os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        os.replace(src, dst)


def default_name(scenario: dict | None) -> str:
    """"mnist5k · smallcnn · badnet" from a scenario dict, or a dated placeholder."""
    scenario = scenario or {}
    data, train, attack = (scenario.get(k) or {} for k in ("data", "train", "attack"))
    parts = [os.path.basename(os.path.normpath(str(data["data_dir"]))) if data.get("data_dir")
             else data.get("dataset"), train.get("model"), None if scenario.get("checkpoint") else attack.get("attack")]
    parts = [str(p) for p in parts if p]
    return " · ".join(parts) if parts else f"Investigation of {now()[:16].replace('T', ' ')}"


def _mtime(path: str) -> str:
    try:
        return datetime.fromtimestamp(os.path.getmtime(path), timezone.utc).isoformat(timespec="seconds")
    except OSError:
        return ""


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]
