"""Investigations survive the session: a new session on the same ``?investigation=`` id shows the
same model, picks, collapse, decisions and unlearning; another id never mixes in."""

from __future__ import annotations

import numpy as np
import pytest
from app_driver import APP, TINY, errors, goto, metric, new_app, ok, state
from streamlit.testing.v1 import AppTest

from deltainf_core.investigations import InvestigationStore
from pages.ui.state import Session


def reopen(inv_id: str) -> AppTest:
    """A fresh browser session (nothing in its state) opening the investigation's URL."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["investigation"] = inv_id
    return ok(at.run())


@pytest.mark.slow
def test_an_investigation_reopens_where_it_was(clear_caches, cache_dir):
    at = ok(new_app())
    at.button(key="scn_train").click().run()
    assert not errors(ok(at))
    inv_id = state(at).inv_id
    assert inv_id and at.query_params["investigation"] == inv_id

    goto(at, "affected_image")
    goto(at, "influence_collapse")
    at.button(key="col_compute").click().run()
    ok(at)
    goto(at, "triage")
    at.button(key="tri_all_yes").click().run()  # approve every candidate shown, then reject two tiles
    shown = [int(b.key.split("_")[-1]) for b in at.button_group if b.key and b.key.startswith("tri_dec_")]
    assert len(shown) >= 2
    rejected = sorted(shown[:2])
    for i in rejected:
        at.button_group(key=f"tri_dec_{i}").set_value("reject").run()
    approved = metric(ok(at), "Approved")
    approved_set = set(state(at).approved)
    assert approved == f"{len(approved_set):,}" and not approved_set & set(rejected)
    goto(at, "unlearn")
    at.button(key="unl_run").click().run()
    ok(at)
    before = state(at)
    assert before.unlearned is not None and not errors(at)

    again = reopen(inv_id)
    s = state(again)
    assert s.inv_id == inv_id and s.active.model_key == before.active.model_key
    assert s.picked == before.picked and s.rejected == set(rejected) and s.approved == approved_set
    assert s.collapse is not None
    np.testing.assert_array_equal(s.collapse.value.scores, before.collapse.value.scores)
    assert s.unlearned.forget == before.unlearned.forget and s.unlearned.method == before.unlearned.method
    assert len(s.runs) == 1 and s.runs[0].forget == before.unlearned.forget
    for key, value in TINY.items():
        assert again.session_state[key] == value, key
    goto(again, "triage")
    assert metric(again, "Approved") == approved
    goto(again, "unlearn")
    assert metric(again, "Clean accuracy after") == metric(at, "Clean accuracy after")

    # a reopen cut short by a click on a page link (the browser sends it while the reopen runs, and a
    # page link drops the query string): the next run, on another page and without the id, finishes it
    cut = AppTest.from_file(APP, default_timeout=300)
    cut.session_state["session"] = Session(inv_id=inv_id, restoring=inv_id)  # what the cut-short reopen left
    goto(cut, "unlearn")
    assert state(cut).restoring is None and cut.query_params["investigation"] == inv_id
    assert state(cut).rejected == set(rejected) and state(cut).unlearned.forget == before.unlearned.forget
    assert metric(cut, "Clean accuracy after") == metric(at, "Clean accuracy after")

    # another investigation in another session: its own id, and neither changes the other
    other = ok(new_app(scn_seed=1))
    other.button(key="scn_train").click().run()
    ok(other)
    assert state(other).inv_id not in (None, inv_id)
    store = InvestigationStore(f"{cache_dir}/investigations")
    assert store.load(inv_id).rejected == rejected and store.load(state(other).inv_id).rejected == []
    assert store.load(inv_id).approved == sorted(approved_set) and store.load(state(other).inv_id).approved == []
    listed = {item.id: item for item in store.list()}
    assert listed[inv_id].status == "unlearned" and listed[state(other).inv_id].status == "model"


def test_an_unknown_id_starts_a_new_investigation(clear_caches):
    at = reopen("nosuch99")
    assert any("cannot be opened" in w.value for w in at.warning)
    assert state(at).inv_id is None and "investigation" not in at.query_params
