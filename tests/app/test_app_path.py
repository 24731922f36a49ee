"""The Streamlit app driven through AppTest: the analyst's whole path on a tiny built-in scenario.

Every number the app shows is compared with the core's own result for the same
configs (computed here through a separate ``Pipeline`` on the same disk cache), and
bad uploads must end in one ``st.error`` sentence while the session keeps working.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch
from app_driver import ROOT, errors, goto, metric, new_app, ok, pct, state, tiny_scenario
from PIL import Image

from deltainf_core import (
    RULES,
    checkpoint_bytes,
    compare,
    precision_recall,
)
from deltainf_core.collapse.rules import EffectSizeParams

SHIPPED = str(ROOT / "bench" / "results")


def test_pages_explain_what_to_do_before_a_model_exists(clear_caches):
    at = ok(new_app())
    assert at.button(key="scn_train").label == "Train"
    for page in ("affected_image", "influence_collapse", "triage", "unlearn"):
        goto(at, page)
        assert any("Scenario" in i.value for i in at.info), page
    goto(at, "compare")


def test_choices_survive_page_switches(clear_caches):
    at = ok(new_app())
    at.number_input(key="scn_epochs").set_value(7).run()
    at.selectbox(key="scn_strategy").set_value("kfac").run()
    goto(at, "triage")
    goto(at, "scenario")
    assert at.number_input(key="scn_epochs").value == 7
    assert at.selectbox(key="scn_strategy").value == "kfac"


def test_whole_path_matches_the_core(clear_caches, pipeline):
    scn = tiny_scenario()
    at = ok(new_app())

    # 1 · Scenario: one click on Train with the tiny knobs
    at.button(key="scn_train").click().run()
    ok(at)
    assert not errors(at)
    active = state(at).active
    assert active.scenario.as_dict() == scn.as_dict()
    tm = pipeline.trained(scn)
    poisoned = pipeline.poisoned(scn)
    assert active.model_key == tm.key
    assert metric(at, "Clean accuracy") == pct(tm.clean_accuracy)
    assert metric(at, "Poison success rate") == pct(tm.poison_success_rate)
    assert metric(at, "Training images") == f"{len(poisoned.train):,}"
    assert metric(at, "Poisoned images") == f"{len(poisoned.poison_indices):,}"

    # 2 · Affected image: the first candidates are preselected
    goto(at, "affected_image")
    cands = pipeline.affected_candidates(scn)
    assert len(cands) >= 1, "the tiny backdoor must take hold on at least one test image"
    picked = [int(i) for i in cands[:2]]
    assert state(at).picked == picked
    assert any(f"{len(cands)} of {len(poisoned.psr_set)}" in m.value for m in at.markdown)

    # 3 · Influence collapse: one scoring pass, same scores as the core
    goto(at, "influence_collapse")
    at.button(key="col_compute").click().run()
    ok(at)
    assert not errors(at)
    affected = pipeline.affected_set(scn, picked)
    core = pipeline.collapse(scn, affected, target_class=poisoned.target_class)
    app_result = state(at).collapse.value
    np.testing.assert_allclose(app_result.scores, core.scores, rtol=1e-5)
    rule = RULES.get("delta")(core, EffectSizeParams())
    flagged, d = rule.flagged, rule.statistic
    assert any(m.value.startswith(f"**{len(flagged)}** training images flagged") for m in at.markdown)

    # toggling transformations re-flags instantly from the same scores
    subset = [t for t in dict.fromkeys(core.queries.transform.tolist()) if t][:2]
    at.session_state["col_transforms"] = subset
    at.run()
    ok(at)
    flagged_subset = RULES.get("delta")(core, EffectSizeParams(), subset).flagged
    assert any(m.value.startswith(f"**{len(flagged_subset)}** training images flagged") for m in at.markdown)
    at.session_state["col_transforms"] = list(dict.fromkeys(t for t in core.queries.transform.tolist() if t))
    at.run()

    # 4 · Triage: the default rule equals the core's delta detector; nothing is approved until the analyst
    # says so; a cut through the rule's order approves its top k and rejects the rest
    goto(at, "triage")
    detection = pipeline.detect(scn, affected, poisoned.target_class)
    np.testing.assert_array_equal(detection.flagged, flagged)
    assert metric(at, "Flagged") == f"{len(flagged):,}"
    assert metric(at, "Approved") == "0" and metric(at, "Undecided") == f"{len(flagged):,}"
    assert metric(at, "Recall") == pct(0.0)
    k = max(2, len(flagged) // 2)
    at.slider(key="tri_cut").set_value(k).run()
    at.button(key="tri_cut_apply").click().run()
    ok(at)
    order = np.argsort(-d[flagged], kind="stable")
    expected = sorted(int(i) for i in flagged[order][:k])
    assert metric(at, "Approved") == f"{k:,}" and metric(at, "Rejected") == f"{len(flagged) - k:,}"
    precision, recall = precision_recall(expected, poisoned.poison_indices)
    assert metric(at, "Precision") == pct(precision)
    assert metric(at, "Recall") == pct(recall)
    # one image rejected by hand on its tile
    first = expected[0]
    at.button_group(key=f"tri_dec_{first}").set_value("reject").run()
    expected.remove(first)
    assert metric(ok(at), "Approved") == f"{len(expected):,}"

    # 5 · Unlearn: EU on the approved set, numbers equal the core's
    goto(at, "unlearn")
    at.button(key="unl_run").click().run()
    ok(at)
    assert not errors(at), errors(at)
    assert state(at).unlearned.forget == expected
    outcome = pipeline.unlearn(scn, expected, "eu")
    assert metric(at, "Clean accuracy after") == pct(outcome.clean_accuracy)
    assert metric(at, "Poison success rate after") == pct(outcome.poison_success_rate)
    assert metric(at, "Images removed") == f"{len(expected):,}"

    # the sidebar summary and every page still render
    for page in ("scenario", "affected_image", "influence_collapse", "triage", "unlearn", "compare"):
        goto(at, page)


def test_compare_page_shows_the_latest_table(clear_caches, tmp_path, monkeypatch):
    import json

    rows = [{"attack": "badnet", "detector": d, "unlearner": "eu", "psr_before": 0.9, "psr_after": psr,
             "acc_before": 0.97, "acc_after": 0.96, "n_flagged": 50, "precision": 0.4, "recall": 1.0,
             "success": psr < 0.05, "seconds": 12.0} for d, psr in (("delta", 0.01), ("spectral", 0.5))]
    old = tmp_path / "compare-mnist5k-old.json"
    old.write_text(json.dumps({"dataset": "old", "rows": rows[:1], "markdown": "", "figure_png": None}))
    new = tmp_path / "compare-mnist5k-new.json"
    new.write_text(json.dumps({"dataset": "mnist5k", "rows": rows, "markdown": "| table |", "figure_png": None}))
    os.utime(old, (1, 1))
    monkeypatch.setenv("DELTAINF_RESULTS", str(tmp_path))
    at = goto(new_app(), "compare")
    assert any("mnist5k" in h.value for h in at.subheader)
    table = at.dataframe[0].value
    here = table[table["origin"] == "here"]
    assert list(here["detector"]) == ["delta", "spectral"]
    assert here["psr_after"].tolist() == pytest.approx([1.0, 50.0])  # shown in percent
    # the shipped reference on the same dataset stays beside it, its rows marked as such
    _ref_path, ref = compare.reference_comparison(SHIPPED, "mnist5k")
    shipped = table[table["origin"] == "reference"]
    assert len(shipped) == len(ref["rows"]) >= 20 and set(ref["attacks"]) <= set(shipped["attack"])
    assert any(f"{len(ref['rows'])} runs" in c.value for c in at.caption)
    assert any("run on this machine" in c.value and "· 2 runs" in c.value for c in at.caption)
    assert next(t.label for t in at.tabs) == "Figure: here"
    (tmp_path / "compare-broken.json").write_text("{not json")
    goto(at, "compare")


def test_compare_estimates_come_from_measured_cells(tmp_path):
    """A one-cell run is estimated from that cell as measured, not from a 20-cell table's average."""
    import json

    rows = [{"attack": "badnet", "detector": "delta", "unlearner": "eu", "seconds": 247.0, "unlearn_seconds": 75.0},
            {"attack": "badnet", "detector": "spectral", "unlearner": "eu", "seconds": 74.0, "unlearn_seconds": 70.0},
            {"attack": "smooth", "detector": "delta", "unlearner": "eu", "seconds": 400.0, "unlearn_seconds": 99.0}]
    (tmp_path / "compare-mnist5k-a.json").write_text(json.dumps(
        {"dataset": "mnist5k", "rows": rows, "seconds": 3000.0, "created": "2026-01-01T00:00:00"}))
    one = compare.estimate_cells([("badnet", "delta", "eu")], "mnist5k", [str(tmp_path)])
    assert (one.low, one.high, one.measured, one.n) == (75.0, 247.0, 1, 1)
    text = compare.estimate_text(one)
    assert text.startswith("about 75s–4 min") and "1 of these 1 cell measured" in text
    unseen = compare.estimate_cells([("badnet", "frequency", "eu")], "mnist5k", [str(tmp_path)])
    assert unseen.measured == 0 and unseen.high == 247.0  # the median of the dataset's EU cells
    assert compare.estimate_cells([("badnet", "delta", "eu")], "cifar10", [str(tmp_path)]) is None
    assert compare.planned_cells(["badnet"], ["delta", "spectral"], ["eu", "ssd"]) == [
        ("badnet", "delta", "eu"), ("badnet", "spectral", "eu"), ("badnet", "delta", "ssd")]


def test_compare_page_launches_a_run_and_shows_its_table(clear_caches, tmp_path, monkeypatch):
    """With no result yet the form is open; a finished run's file becomes the table."""
    import json

    import deltainf_core.compare as compare

    calls = []

    def fake_run(base, attacks, detectors, unlearners, *, progress, out_dir, pipeline, brew_targets):
        calls.append((attacks, detectors, unlearners, out_dir))
        rows = [{"attack": attacks[0], "detector": d, "unlearner": "eu", "psr_before": 1.0, "psr_after": 0.0,
                 "success": True} for d in detectors]
        result = {"dataset": base.data.dataset, "rows": rows, "markdown": "", "figure_png": None}
        (tmp_path / "compare-fake.json").write_text(json.dumps(result))
        return result

    monkeypatch.setattr(compare, "run_comparison", fake_run)
    monkeypatch.setenv("DELTAINF_RESULTS", str(tmp_path))
    at = goto(new_app(), "compare")
    # a fresh clone shows the shipped reference under bench/results/, marked as such
    assert any("shipped with the repository" in c.value and "read against" in c.value for c in at.caption)
    assert not [m for m in at.markdown if "Where `compare-*.json`" in m.value]  # no code comment as page text
    at.multiselect(key="cmp_detectors").set_value(["delta", "spectral"])
    at.button(key="cmp_run").click().run(timeout=60)
    assert calls == [(["badnet"], ["delta", "spectral"], ["eu"], str(tmp_path))]
    assert any("Comparison finished" in m.value for m in at.success)
    table = at.dataframe[0].value
    assert list(table[table["origin"] == "here"]["detector"]) == ["delta", "spectral"]
    assert (table["origin"] == "reference").sum() >= 20  # the reference stays


class _Payload:
    """Unpickling this would run a shell command: a weights-only loader must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_uploads_give_one_sentence_and_the_session_keeps_working(clear_caches, pipeline, tmp_path):
    scn = tiny_scenario()
    tm = pipeline.trained(scn)
    splits = pipeline.dataset(scn.data)
    at = ok(new_app())
    at.radio(key="scn_mode").set_value("checkpoint").run()
    ok(at)

    def load(name: str, data: bytes) -> list[str]:
        at.file_uploader(key="scn_ckpt_file").set_value((name, data, "application/octet-stream"))
        at.run()
        at.button(key="scn_load").click().run()
        ok(at)
        return errors(at)

    corrupt = load("corrupt.pt", b"PK\x03\x04 this is not a real checkpoint" * 20)
    assert len(corrupt) == 1 and "not a readable PyTorch checkpoint" in corrupt[0]

    marker = tmp_path / "pwned"
    evil = pickle.dumps({"state_dict": _Payload(str(marker))})
    buf = io.BytesIO()
    torch.save({"state_dict": _Payload(str(marker))}, buf)
    for name, data in (("evil.pkl.pt", evil), ("evil.pt", buf.getvalue())):
        msgs = load(name, data)
        assert len(msgs) == 1 and ("refused" in msgs[0] or "not a readable" in msgs[0]), msgs
    assert not marker.exists(), "a pickled-code checkpoint was executed"
    assert state(at).active is None

    # a genuine checkpoint of the same architecture loads: no ground truth, same accuracy
    good = checkpoint_bytes(tm.model, "smallcnn", splits.classes)
    assert load("model.pt", good) == []
    active = state(at).active
    assert active is not None and active.mode == "checkpoint"
    assert metric(at, "Clean accuracy") == pct(tm.clean_accuracy)
    assert metric(at, "Poison success rate") == "n/a"
    assert metric(at, "Poisoned images") == "unknown"

    # affected-image uploads
    goto(at, "affected_image")

    def upload(name: str, data: bytes) -> list[str]:
        at.file_uploader(key="aff_upload_file").set_value((name, data, "image/png"))
        at.run()
        ok(at)
        return errors(at)

    text = upload("notes.png", b"this is a text file, not an image\n" * 5)
    assert len(text) == 1 and "not an image" in text[0]
    tiny = upload("dot.png", _png(Image.new("L", (1, 1), 255)))
    assert len(tiny) == 1 and "1×1" in tiny[0]
    rgba = Image.new("RGBA", (28, 28), (255, 255, 255, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    alpha = upload("alpha.png", _png(rgba))
    assert len(alpha) == 1 and "alpha" in alpha[0]
    assert state(at).uploads == []

    # a good (larger, colour) upload is converted with visible notes and used
    digit = (splits.test.images[0, 0].numpy() * 255).astype(np.uint8)
    big = Image.fromarray(digit).convert("RGB").resize((56, 56))
    assert upload("digit.png", _png(big)) == []
    notes = " ".join(i.value for i in at.info)
    assert "grayscale" in notes and "resized" in notes
    assert len(state(at).uploads) == 1

    # the investigation goes on without ground truth: collapse, then triage without precision/recall
    goto(at, "influence_collapse")
    at.button(key="col_compute").click().run()
    ok(at)
    assert not errors(at)
    assert state(at).collapse.value.scores.shape[0] == 2 + 8 + 4  # a gallery pick + the upload
    goto(at, "triage")
    assert metric(at, "Precision") == "no ground truth"
    for page in ("unlearn", "scenario"):
        goto(at, page)
