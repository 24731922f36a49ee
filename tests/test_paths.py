"""Every bad output path is one line before any work; a read-only cache serves what it holds.

"No work done" is checked by the cache folder: a run refused for its paths never creates it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import TINY_FLAGS, run_cli

from deltainf_core import store
from deltainf_core.errors import CacheError
from deltainf_core.pipeline import run_results

TINY = TINY_FLAGS




def one_line(rc: int, err: str, pattern: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err and re.search(pattern, lines[0]), lines[0]


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("a regular file\n")
    return path


def refused(capsys, tmp_path: Path, pattern: str, *args: str) -> None:
    """Refused in one line, and nothing computed: the (fresh) cache folder was never made."""
    cache = tmp_path / "fresh-cache"
    extra = [] if "--cache-dir" in args else ["--cache-dir", str(cache)]
    rc, out, err = run_cli(capsys, *args, *extra)
    one_line(rc, err, pattern)
    assert out == "" and not cache.exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_out_under_a_regular_file(capsys, tmp_path, a_file):
    refused(capsys, tmp_path, rf"--out {re.escape(str(a_file))}/r\.json: .*notes\.txt is a file, so no file can be "
            "created under it", "--out", f"{a_file}/r.json")


def test_out_deep_under_a_regular_file(capsys, tmp_path, a_file):
    refused(capsys, tmp_path, r"notes\.txt is a file", "--out", f"{a_file}/a/b/r.json")


def test_out_is_an_existing_folder(capsys, tmp_path):
    folder = tmp_path / "outdir"
    folder.mkdir()
    refused(capsys, tmp_path, r"--out .*outdir is a folder; give a file name such as .*outdir/results\.json",
            "--out", str(folder))
    assert list(folder.iterdir()) == []


def test_report_under_a_regular_file_or_a_folder(capsys, tmp_path, a_file):
    refused(capsys, tmp_path, r"--report .*notes\.txt is a file", "--report", f"{a_file}/report.html")
    refused(capsys, tmp_path, r"--report .* is a folder; give a file name such as .*report\.html",
            "--report", str(tmp_path))


def test_out_and_report_the_same_file(capsys, tmp_path):
    same = str(tmp_path / "x.json")
    refused(capsys, tmp_path, r"--out and --report name the same file", "--out", same, "--report", same)


def test_cache_dir_is_a_file_or_under_one(capsys, tmp_path, a_file):
    refused(capsys, tmp_path, r"--cache-dir .*notes\.txt is a file, not a folder", "--cache-dir", str(a_file))
    refused(capsys, tmp_path, r"--cache-dir .*notes\.txt/cache: .*notes\.txt is a file", "--cache-dir",
            f"{a_file}/cache")


def test_unwritable_folder(capsys, tmp_path, monkeypatch):
    """Permissions cannot be taken from root, so the write probe is made to fail as it would."""
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    refused(capsys, tmp_path, r"--out .*r\.json: cannot write in .* \(Permission denied\); choose a writable place",
            "--out", str(tmp_path / "r.json"))
    refused(capsys, tmp_path, r"--out .*new/r\.json: cannot create .*new \(Permission denied\)",
            "--out", str(tmp_path / "new" / "r.json"))


@pytest.mark.parametrize("argv", [
    ["run", "--out", "{file}/x.json"], ["run", "--report={file}/r.html"], ["run", "--cache-dir", "{file}"],
    ["compare", "--out-dir", "{file}/q"],
])
def test_a_bad_path_fails_before_torch_is_loaded(a_file, argv):
    """The entry point refuses a bad path in a fresh interpreter without importing torch (seconds)."""
    args = [a.format(file=a_file) for a in argv]
    probe = ("import sys; from deltainf_core.cli import main; rc = main(sys.argv[1:]); "
             "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=120)
    one_line(proc.returncode, proc.stderr, "is a file")
    assert proc.stdout.strip() == "torch not loaded"


def test_a_good_out_path_is_created_with_its_folders(tmp_path):
    from deltainf_core.paths import check_cache_dir, check_output_file

    path = tmp_path / "a" / "b" / "r.json"
    assert check_output_file(str(path), "--out") == str(path)
    assert not (tmp_path / "a").exists()  # checking creates nothing
    assert check_cache_dir(str(tmp_path / "c")) == str(tmp_path / "c") and not (tmp_path / "c").exists()


def test_a_read_only_cache_that_holds_every_stage_serves_the_results(capsys, pipeline, tiny_scenario, cache_dir,
                                                                     monkeypatch, tmp_path):
    """Written once, then opened as a read-only mount would be: the same results, nothing written."""
    run_results(pipeline, tiny_scenario)  # every stage in the cache (instant when an earlier test ran it)
    rc, out, err = run_cli(capsys, *TINY, "--cache-dir", cache_dir)
    assert rc == 0, err
    writable = json.loads(out)
    entries = sorted(os.listdir(cache_dir))
    monkeypatch.setattr(store, "_unwritable", lambda directory: True)
    rc, out, err = run_cli(capsys, *TINY, "--cache-dir", cache_dir)
    assert rc == 0, err
    served = json.loads(out)
    for r in (writable, served):  # everything but the wall-clock times
        r.pop("timings_s")
        for record in r["rounds"]:
            record.pop("seconds")
    assert served == writable
    assert sorted(os.listdir(cache_dir)) == entries


def test_a_read_only_cache_that_lacks_a_stage_names_the_folder_before_training(capsys, pipeline, tiny_scenario,
                                                                              cache_dir, monkeypatch):
    pipeline.poisoned(tiny_scenario)  # the poisoned set is cached, the model of another seed is not
    monkeypatch.setattr(store, "_unwritable", lambda directory: True)
    trained = []
    monkeypatch.setattr("deltainf_core.pipeline.stages.train_model", lambda *a, **k: trained.append(1))
    rc, _, err = run_cli(capsys, *TINY, "--train-seed", "7", "--cache-dir", cache_dir)
    one_line(rc, err, rf"the cache at {re.escape(cache_dir)} is read-only and does not hold the model train:v\d+:"
                      r"\w+; pass --cache-dir a writable folder")
    assert trained == []
    with pytest.raises(CacheError):
        store.Store(cache_dir).set("train:v1:x", 1)


def test_run_writes_the_stakeholder_report(capsys, pipeline, tiny_scenario, cache_dir, tmp_path):
    """``run --report``: the JSON and a self-contained HTML page, from the cached tiny run."""
    run_results(pipeline, tiny_scenario)
    out, report = tmp_path / "r.json", tmp_path / "reports" / "report.html"
    rc, _, err = run_cli(capsys, *TINY, "--cache-dir", cache_dir, "--out", str(out), "--report", str(report))
    assert rc == 0, err
    html = report.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "data:image/png;base64," in html
    assert json.loads(out.read_text())["detection"]["n_flagged"] > 0
