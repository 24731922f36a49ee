"""Triage under delta_heldout: a rule that retrains runs as a detector (button, progress) and says what it did."""

from __future__ import annotations

from app_driver import goto, metric, new_app, ok, state, tiny_scenario

from deltainf_core import DETECTORS
from deltainf_core.collapse.heldout import describe_heldout


def test_triage_runs_the_heldout_rule_with_a_button(clear_caches, pipeline):
    scn = tiny_scenario()
    at = ok(new_app())
    at.button(key="scn_train").click().run()
    goto(ok(at), "affected_image")
    goto(at, "influence_collapse")
    at.button(key="col_compute").click().run()
    goto(ok(at), "triage")
    at.session_state["tri_rule"] = "delta_heldout"
    at.run()
    assert not DETECTORS.trait("delta_heldout", "collapse_rule")  # never re-applied live: it retrains
    assert any(b.key == "tri_run" for b in at.button), "the rule needs a Run button"
    at.button(key="tri_run").click().run()
    ok(at)
    det = state(at).detections["delta_heldout"].value
    assert det.method == "delta_heldout" and "heldout_used" in det.info
    assert metric(at, "Flagged") == f"{len(det.flagged):,}"
    said = describe_heldout(det.info)
    assert said and any(c.value == said for c in at.caption), [c.value for c in at.caption]
    assert len(pipeline.poisoned(scn).train) == det.scores.shape[0]
    # the fallback's tail, wider: its tiles (weakest evidence, the last page) say they are below delta's cut
    at.session_state["tri_delta_heldout_fallback_tail_sd"] = 4.0
    at.run()
    at.button(key="tri_run").click().run()
    wide = state(ok(at)).detections["delta_heldout"].value
    tail = set(wide.info["fallback_tail"])
    assert wide.info["heldout_used"] is False and tail and wide.flagged.size > det.flagged.size
    tiles: dict[int, str] = {}
    for page in range(1, int(at.number_input(key="tri_page").max) + 1):  # every page of tiles
        at.number_input(key="tri_page").set_value(page).run()
        tiles |= {int(c.split(" ·")[0][1:]): c for el in at.get("image") for c in el.captions if c.startswith("#")}
    assert set(tiles) == set(wide.flagged.tolist())
    marked = {i for i, text in tiles.items() if "below delta's cut, in its group's tail" in text}
    assert marked == tail, (sorted(marked), sorted(tail))

