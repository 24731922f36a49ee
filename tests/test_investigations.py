"""Investigations on disk: round trips, listing, two writers, damaged files, and the approved-list import."""

from __future__ import annotations

import json
import multiprocessing
import os
import urllib.parse

import numpy as np
import pytest

from deltainf_core import DetectConfig, Scenario
from deltainf_core.config import config_dict
from deltainf_core.investigations import (
    SCHEMA_VERSION,
    AffectedImage,
    Investigation,
    InvestigationError,
    InvestigationNotFound,
    InvestigationStore,
    UnlearnRun,
    approved_csv,
    approved_json,
    decisions_for,
    read_approved_list,
)
from deltainf_core.investigations import record as record_module


@pytest.fixture()
def store(tmp_path) -> InvestigationStore:
    return InvestigationStore(str(tmp_path / "investigations"))


def test_default_root_is_under_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DELTAINF_CACHE", str(tmp_path / "c"))
    assert InvestigationStore().root == os.path.join(str(tmp_path / "c"), "investigations")


def test_create_load_round_trip(store):
    scn = Scenario()
    inv_id = store.create(scenario=scn.as_dict(), model_key="train:v2:abc", mode="train",
                          model={"clean_accuracy": 0.9, "poison_success_rate": 1.0, "n_train": 4000, "n_poisons": 40})
    assert urllib.parse.quote(inv_id, safe="") == inv_id and 6 <= len(inv_id) <= 12
    assert os.path.isfile(os.path.join(store.root, f"{inv_id}.json"))
    rec = store.load(inv_id)
    assert rec.id == inv_id and rec.schema == SCHEMA_VERSION
    assert rec.name == "mnist5k · smallcnn · badnet"  # named after the scenario when no name is given
    assert rec.scenario == scn.as_dict()
    assert rec.model["n_poisons"] == 40
    assert rec.status == "model"
    other = store.create("  My case  ")
    assert other != inv_id and store.load(other).name == "My case"


def test_every_field_survives_update_and_status_follows_the_work(store):
    inv_id = store.create("case", scenario=Scenario().as_dict(), model_key="k")
    first = store.load(inv_id)

    def pick(rec: Investigation) -> None:
        rec.affected = [AffectedImage("triggered", index=3), AffectedImage("test", index=17)]
        rec.affected_target = 1

    assert store.update(inv_id, pick).status == "affected"

    def collapse(rec: Investigation) -> None:
        rec.collapse = {"n_copies": 50, "n_copies_extra": 20}
        rec.transforms = ["flip", "blur"]
        rec.rule = config_dict(DetectConfig(params={"effect_size": 2.5}))

    assert store.update(inv_id, collapse).status == "collapse"
    assert store.update(inv_id, lambda r: setattr(r, "rejected", [5, 9])).status == "triage"

    def unlearn(rec: Investigation) -> None:
        rec.added = [42]
        rec.unlearning.append(UnlearnRun({"method": "eu", "epochs": None, "params": {}, "seed": 0}, [1, 2, 42],
                                         clean_accuracy=0.91, poison_success_rate=0.0, seconds=3.5))
        rec.oracle = {"clean_accuracy": 0.92, "poison_success_rate": 0.0}
        rec.round, rec.prior = 2, [1, 2, 42]

    store.update(inv_id, unlearn)
    store.update(inv_id, lambda r: setattr(r, "settings", {"scn_epochs": 3, "col_transforms": ["flip"]}))
    rec = store.load(inv_id)
    assert rec.settings == {"scn_epochs": 3, "col_transforms": ["flip"]}
    assert rec.status == "unlearned"
    assert rec.affected == [AffectedImage("triggered", index=3), AffectedImage("test", index=17)]
    assert rec.rule["params"]["effect_size"] == 2.5 and rec.transforms == ["flip", "blur"]
    assert rec.rejected == [5, 9] and rec.added == [42] and rec.prior == [1, 2, 42] and rec.round == 2
    run = rec.unlearning[0]
    assert isinstance(run, UnlearnRun) and run.method == "eu" and run.forget == [1, 2, 42]
    assert run.poison_success_rate == 0.0 and rec.oracle["clean_accuracy"] == 0.92
    assert rec.created == first.created and rec.updated >= first.updated


def test_list_is_newest_first_with_its_columns(store):
    a = store.create("first", scenario=Scenario().as_dict())
    b = store.create("second", scenario={"data": {"dataset": None, "data_dir": "/data/my-folder/"},
                                         "train": {"model": "resnet18"}})
    assert [s.id for s in store.list()] == [b, a]
    store.update(a, lambda r: setattr(r, "model_key", "k"))  # touched last: listed first
    rows = store.list()
    assert [s.id for s in rows] == [a, b]
    assert (rows[0].name, rows[0].dataset, rows[0].model, rows[0].status) == ("first", "mnist5k", "smallcnn", "model")
    assert (rows[1].dataset, rows[1].model, rows[1].status, rows[1].error) == ("my-folder", "resnet18", "draft", None)


def test_rename_and_delete(store):
    inv_id = store.create("old")
    store.put_upload(inv_id, b"png bytes", "x.png")
    assert store.rename(inv_id, "  new name ").name == "new name"
    assert store.load(inv_id).name == "new name"
    with pytest.raises(InvestigationError, match="needs a name"):
        store.rename(inv_id, "   ")
    store.delete(inv_id)
    assert not store.exists(inv_id) and store.list() == []
    assert not os.path.exists(store.uploads_dir(inv_id))
    with pytest.raises(InvestigationNotFound):
        store.load(inv_id)
    with pytest.raises(InvestigationNotFound):
        store.delete(inv_id)
    with pytest.raises(InvestigationNotFound):
        store.update(inv_id, lambda r: None)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "a b c d e f", "x" * 200, "abc/../def"])
def test_ids_from_a_url_never_reach_the_file_system(store, bad):
    with pytest.raises(InvestigationNotFound, match="not an investigation id"):
        store.load(bad)
    assert not store.exists(bad)


def test_uploads_are_stored_by_content_hash(store):
    inv_id = store.create()
    entry = store.put_upload(inv_id, b"\x89PNG fake image", "dir/shot.png")
    assert entry.source == "upload" and entry.name == "shot.png" and len(entry.sha256) == 64
    assert store.put_upload(inv_id, b"\x89PNG fake image", "again.png").sha256 == entry.sha256
    assert store.upload_bytes(inv_id, entry.sha256) == b"\x89PNG fake image"
    with open(os.path.join(store.uploads_dir(inv_id), entry.sha256), "wb") as fh:
        fh.write(b"tampered")
    with pytest.raises(InvestigationError, match="damaged"):
        store.upload_bytes(inv_id, entry.sha256)
    with pytest.raises(InvestigationError, match="SHA-256"):
        store.upload_bytes(inv_id, "../../x")
    with pytest.raises(InvestigationError, match="lost its uploaded image"):
        store.upload_bytes(inv_id, "0" * 64)


@pytest.mark.parametrize("content, reason", [
    ("{not json", "cannot be read"),
    ('{"schema": 1, "id": "BROKEN01", "name": "x", "rejected": "all"}', "damaged"),
    ('{"schema": 1, "id": "BROKEN01", "name": "x", "scenario": [1, 2]}', "damaged"),
    ('{"schema": 1, "id": "BROKEN01", "name": "x", "settings": "all"}', "damaged"),
    ('{"schema": 1, "id": "BROKEN01", "name": "x", "unlearning": [{"forget": [1]}]}', "damaged"),
    ('{"id": "BROKEN01", "name": "x"}', "no schema version"),
    ('{"schema": 99, "id": "BROKEN01", "name": "x"}', "newer deltainf"),
    ('{"schema": 1, "id": "OTHER001", "name": "x"}', "holds id"),
    ("\x00\x01\x02", "cannot be read"),
])
def test_a_damaged_record_is_one_line_and_never_hides_the_others(store, content, reason):
    good = store.create("good")
    with open(os.path.join(store.root, "BROKEN01.json"), "w") as fh:
        fh.write(content)
    with pytest.raises(InvestigationError, match=reason) as err:
        store.load("BROKEN01")
    assert "\n" not in str(err.value) and "BROKEN01" in str(err.value)
    rows = {s.id: s for s in store.list()}
    assert rows[good].status == "draft" and rows[good].error is None
    assert rows["BROKEN01"].status == "unreadable" and reason in rows["BROKEN01"].error


def test_stray_files_are_not_listed(store):
    store.create("one")
    for name in ("notes.txt", ".abcdefgh.1234.tmp", "x.lock", "bad id!.json"):
        with open(os.path.join(store.root, name), "w") as fh:
            fh.write("{}")
    assert [s.name for s in store.list()] == ["one"]


def test_older_schemas_are_migrated(store, monkeypatch):
    inv_id = store.create("v2")
    monkeypatch.setattr(record_module, "SCHEMA_VERSION", 3)
    monkeypatch.setitem(record_module.MIGRATIONS, 2, lambda raw: {**raw, "name": raw["name"] + " (migrated)"})
    rec = store.load(inv_id)
    assert rec.name == "v2 (migrated)" and rec.schema == 3


def test_a_schema_1_record_keeps_approving_what_it_did_not_reject():
    """Schema 1 stored no approvals (every candidate not rejected was approved); schema 2 stores them."""
    old = Investigation.from_json({"schema": 1, "id": "OLDREC01", "name": "x", "rejected": [4], "added": [9]})
    assert old.approved is None and old.rejected == [4] and old.schema == SCHEMA_VERSION == 2
    new = Investigation.from_json({**old.to_json(), "approved": [1, 9]})
    assert new.approved == [1, 9] and new.status == "triage"
    assert Investigation.from_json({"schema": 2, "id": "NEWREC01", "name": "y"}).approved == []
    with pytest.raises(ValueError, match="approved"):
        Investigation.from_json({"schema": 2, "id": "NEWREC01", "name": "y", "approved": ["all"]})


def _append(root: str, inv_id: str, values: list[int]) -> None:
    s = InvestigationStore(root)
    for v in values:
        s.update(inv_id, lambda r, v=v: r.added.append(v))


def _overwrite(root: str, inv_id: str, name: str, n: int) -> None:
    s = InvestigationStore(root)
    for k in range(n):
        s.save(Investigation(id=inv_id, name=name, rejected=list(range(k % 7 * 100))))


def _processes(target, arg_lists) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=target, args=args) for args in arg_lists]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0


def test_two_processes_on_different_records_keep_both(store):
    a, b = store.create("a"), store.create("b")
    _processes(_append, [(store.root, a, list(range(0, 40))), (store.root, b, list(range(100, 140)))])
    assert store.load(a).added == list(range(0, 40))
    assert store.load(b).added == list(range(100, 140))


def test_two_processes_updating_one_record_lose_nothing(store):
    inv_id = store.create("shared")
    _processes(_append, [(store.root, inv_id, list(range(0, 40))), (store.root, inv_id, list(range(100, 140)))])
    assert sorted(store.load(inv_id).added) == [*range(0, 40), *range(100, 140)]


def test_two_processes_saving_one_record_leave_a_whole_one(store):
    inv_id = store.create("shared")
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_overwrite, args=(store.root, inv_id, name, 60)) for name in ("left", "right")]
    for p in writers:
        p.start()
    seen = set()
    while any(p.is_alive() for p in writers):
        rec = store.load(inv_id)  # a reader never meets half a file
        seen.add(rec.name)
        assert rec.rejected == list(range(len(rec.rejected)))
    for p in writers:
        p.join(60)
        assert p.exitcode == 0
    assert store.load(inv_id).name in {"left", "right"}
    assert seen <= {"shared", "left", "right"}
    assert [f for f in os.listdir(store.root) if f.endswith(".tmp")] == []


# -- approved lists ------------------------------------------------------------------------------
N_TRAIN = 50
LABELS = np.arange(N_TRAIN) % 10
EVIDENCE = np.linspace(0, 10, N_TRAIN)


def test_both_export_formats_read_back():
    approved = np.array([3, 7, 41])
    csv_text = approved_csv(approved, LABELS, EVIDENCE, poisons=[3, 7])
    assert csv_text.splitlines()[0] == "train_index,label,evidence,known_poison"
    got = read_approved_list(csv_text.encode(), N_TRAIN, "approved.csv", labels=LABELS)
    assert got.format == "csv" and got.indices.tolist() == [3, 7, 41] and got.notes == []
    js = approved_json(approved, Scenario().as_dict(), "train:v2:abc", "delta", 2.0, ["flip"])
    got = read_approved_list(js.encode(), N_TRAIN, "approved.json", model_key="train:v2:abc")
    assert got.format == "json" and got.indices.tolist() == [3, 7, 41] and got.notes == []
    removed = json.dumps({"method": "eu", "removed": [9, 2], "model_key": "k"})  # the Unlearn page's list
    assert read_approved_list(removed, N_TRAIN).indices.tolist() == [2, 9]
    assert read_approved_list("[4, 1, 4]", N_TRAIN).indices.tolist() == [1, 4]


def test_csv_as_a_spreadsheet_saves_it():
    text = "\ufefftrain_index;label;evidence;known_poison\r\n12;2;3.5;1\r\n\r\n5;5;2.1;0\r\n"
    assert read_approved_list(text.encode("utf-8"), N_TRAIN).indices.tolist() == [5, 12]
    assert read_approved_list(b"8\n3\n", N_TRAIN).indices.tolist() == [3, 8]  # a bare column of indices
    reordered = "label,train_index\n1,11\n"
    assert read_approved_list(reordered, N_TRAIN, labels=LABELS).indices.tolist() == [11]


def test_import_notes():
    got = read_approved_list("train_index,label\n3,3\n3,3\n4,9\n", N_TRAIN, labels=LABELS)
    assert got.indices.tolist() == [3, 4]
    assert any("duplicate" in n for n in got.notes) and any("another label" in n for n in got.notes)
    js = approved_json([1], {}, "model-A", "delta")
    assert any("another model" in n for n in read_approved_list(js, N_TRAIN, model_key="model-B").notes)


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"   \n", "is empty"),
    (b"\xff\xfe\x00garbage\x80", "not a text file"),
    (b"{\"approved\": [1, 2", "not valid JSON"),
    (b"{\"flagged\": [1, 2]}", "no \"approved\" list"),
    (b"{\"approved\": 3}", "not a list"),
    (b"{\"approved\": [1, \"two\"]}", "entry 2"),
    (b"{\"approved\": [1, 2.5]}", "entry 2"),
    (b"{\"approved\": [true]}", "entry 1"),
    (b"{\"approved\": [1, 2], \"n_approved\": 3}", "cut or edited"),
    (b"{\"approved\": [1, 50, 70, -1]}", "3 training indices outside 0..49 (50, 70, -1)"),
    (b"name,score\nx,1\n", "no train_index column"),
    (b"train_index,label\n4,1\n,2\n", "line 3 has no train_index"),
    (b"train_index,label\n4,1\nfour,2\n", "line 3: 'four'"),
    (b"train_index\n" + b"\n".join(str(i).encode() for i in range(60)), "10 training indices outside 0..49"),
])
def test_malformed_lists_get_one_clear_sentence(content, message):
    with pytest.raises(InvestigationError) as err:
        read_approved_list(content, N_TRAIN, "approved.x")
    text = str(err.value)
    assert message in text and "approved.x" in text and "\n" not in text


def test_decisions_reproduce_an_imported_list():
    candidates = np.array([1, 2, 3, 8])
    added, rejected = decisions_for(candidates, [2, 3, 9])
    assert added == [9] and rejected == [1, 8]
    approved = (set(candidates.tolist()) | set(added)) - set(rejected)
    assert approved == {2, 3, 9}
