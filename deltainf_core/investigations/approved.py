"""The approved list Triage exports (``approved.csv`` / ``approved.json``) and reads back.

The analyst's decisions must survive outside the app too: a list reviewed offline or
kept from an earlier session comes back in as training indices, or is refused with
one sentence that says what is wrong with the file. Writer and reader live together
so the two formats cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .record import InvestigationError

MAX_IMPORT_BYTES = 20 * 2**20
"""An approved list of 1M indices is ~8 MB of CSV; anything much larger is not one."""


CSV_HEADER = ("train_index", "label", "evidence", "known_poison")


def approved_csv(indices: Any, labels: Any, evidence: Any, poisons: Any = None) -> str:
    """Triage's CSV: one row per approved image (``known_poison`` blank without ground truth)."""
    poison = None if poisons is None else {int(i) for i in np.asarray(poisons).ravel().tolist()}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_HEADER)
    for i in np.asarray(indices, dtype=np.int64).tolist():
        writer.writerow([i, int(labels[i]), f"{float(evidence[i]):.6g}", "" if poison is None else int(i in poison)])
    return buf.getvalue()


def approved_json(indices: Any, scenario: dict, model_key: str | None, rule: str, effect_size: float | None = None,
                  transforms: list[str] | None = None, params: dict | None = None) -> str:
    """Triage's JSON: the approved indices with the settings that produced them.

    ``scenario`` should name what the investigation used, not what its settings left open:
    the affected test images (``affected_test_index``) and the attack's resolved classes.
    """
    approved = [int(i) for i in np.asarray(indices, dtype=np.int64).tolist()]
    params = dict(params or {})
    if effect_size is None and isinstance(params.get("effect_size"), (int, float)):
        effect_size = float(params["effect_size"])
    return json.dumps({"scenario": scenario, "model_key": model_key, "rule": rule, "params": params,
                       "effect_size": effect_size, "transforms": transforms,
                       "affected_test_index": list((scenario or {}).get("affected_test_index") or []),
                       "victim_class": ((scenario or {}).get("attack") or {}).get("victim_class"),
                       "approved": approved, "n_approved": len(approved)}, indent=2)


@dataclass
class ApprovedList:
    """Training indices read from an exported approved list.

    format: "csv" or "json". notes: sentences worth showing (e.g. another model's list).
    """

    indices: np.ndarray
    format: str
    notes: list[str] = field(default_factory=list)


def read_approved_list(data: bytes | str, n_train: int, name: str = "the file", model_key: str | None = None,
                       labels: np.ndarray | None = None) -> ApprovedList:
    """Parse ``approved.csv`` / ``approved.json`` as Triage exports them (also ``removed.json``).

    CSV: a header with a ``train_index`` column (``label`` is checked against ``labels``
    when given), or one index per line. JSON: an object with ``approved`` (or
    ``removed``) listing indices, or a bare list. Indices must lie in ``0..n_train-1``;
    duplicates are merged. Raises ``InvestigationError`` with one sentence otherwise.
    """
    if isinstance(data, bytes):
        if len(data) > MAX_IMPORT_BYTES:
            raise InvestigationError(f"{name} is {len(data) / 2**20:.0f} MB, too large for an approved list")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvestigationError(f"{name} is not a text file (expected the CSV or JSON Triage exports)") from None
    else:
        text = data.lstrip("\ufeff")
    if not text.strip():
        raise InvestigationError(f"{name} is empty")
    notes: list[str] = []
    if text.lstrip()[:1] in "[{":
        fmt, values, row_labels = "json", _json_indices(text, name, model_key, notes), None
    else:
        fmt, (values, row_labels) = "csv", _csv_indices(text, name)
    idx = np.asarray(values, dtype=np.int64)
    bad = idx[(idx < 0) | (idx >= n_train)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5]) + (", …" if bad.size > 5 else "")
        raise InvestigationError(f"{name} lists {bad.size} training {'indices' if bad.size > 1 else 'index'} outside "
                                 f"0..{n_train - 1} ({shown}): it was exported from another training set")
    if labels is not None and row_labels is not None:
        have = np.asarray(labels)[idx]
        wrong = sum(1 for r, h in zip(row_labels, have.tolist(), strict=True) if r is not None and r != h)
        if wrong:
            notes.append(f"{wrong} of {len(idx)} rows give another label than this training set has: "
                         "the list may come from another dataset or attack")
    unique = np.unique(idx)
    if unique.size < idx.size:
        notes.append(f"{idx.size - unique.size} duplicate indices were merged")
    return ApprovedList(unique, fmt, notes)


def _as_index(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise InvestigationError(f"{where}: {value!r} is not a training index")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise InvestigationError(f"{where}: {str(value)[:40]!r} is not a training index")


def _json_indices(text: str, name: str, model_key: str | None, notes: list[str]) -> list[int]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvestigationError(f"{name} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(raw, dict):
        key = next((k for k in ("approved", "removed") if k in raw), None)
        if key is None:
            raise InvestigationError(f"{name} has no \"approved\" list (expected the JSON Triage exports)")
        values = raw[key]
        if raw.get("n_approved") is not None and isinstance(values, list) and raw["n_approved"] != len(values):
            raise InvestigationError(f"{name} says n_approved {raw['n_approved']} but lists {len(values)} indices: "
                                     "the file was cut or edited")
        if model_key and raw.get("model_key") and raw["model_key"] != model_key:
            notes.append("this list was exported for another model than the one under investigation")
    else:
        values, key = raw, "list"
    if not isinstance(values, list):
        raise InvestigationError(f"{name}: \"{key}\" is not a list of training indices")
    return [_as_index(v, f"{name}, entry {i + 1}") for i, v in enumerate(values)]


def _csv_indices(text: str, name: str) -> tuple[list[int], list[int | None] | None]:
    first = next(line for line in text.splitlines() if line.strip())
    delimiter = max(",;\t", key=first.count)  # a spreadsheet may have saved it with ; or tabs
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0][1]]
    if "train_index" in header:
        col, body = header.index("train_index"), rows[1:]
        lab = header.index("label") if "label" in header else None
    elif re.fullmatch(r"\s*[+-]?\d+\s*", rows[0][1][0]):
        col, body, lab = 0, rows, None
    else:
        raise InvestigationError(f"{name} has no train_index column (expected the CSV Triage exports)")
    values, labels = [], []
    for line, row in body:
        where = f"{name}, line {line}"
        if col >= len(row) or not row[col].strip():
            raise InvestigationError(f"{where} has no train_index")
        values.append(_as_index(row[col], where))
        cell = row[lab].strip() if lab is not None and lab < len(row) else ""
        labels.append(int(cell) if re.fullmatch(r"[+-]?\d+", cell) else None)
    return values, (labels if lab is not None else None)


def decisions_for(candidates: np.ndarray | list[int], approved: np.ndarray | list[int]) -> tuple[list[int], list[int]]:
    """``(added, rejected)`` that, with every listed image approved, make Triage's approved set equal
    ``approved`` (an imported list): listed indices that are not candidates (flagged ∪ added ∪ prior)
    are added, candidates that are not listed are rejected, so none is left undecided.
    """
    cands = {int(i) for i in np.asarray(candidates).ravel().tolist()}
    keep = {int(i) for i in np.asarray(approved).ravel().tolist()}
    return sorted(keep - cands), sorted(cands - keep)
