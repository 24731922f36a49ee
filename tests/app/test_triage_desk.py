"""Triage's desk through AppTest on the tiny scenario: nothing pre-approved, sort by evidence, filters,
the cut, bulk decisions on what a filter shows, exact decisions across pages, the evidence table in
words, the exported list; and the collapse page's toggles and panels naming one count."""

from __future__ import annotations

import json
import re

import numpy as np
from app_driver import errors, goto, metric, new_app, ok, state

from deltainf_core.collapse import transform_collapse
from deltainf_core.collapse.evidence import label_break_rate
from deltainf_core.investigations.triage import TriageTable, TriageView, view_order


def tiles(at, columns: int = 8) -> list[int]:
    """The training indices of the tiles on the page, in reading order (the element tree lists the
    grid column by column: tiles 1, 9, 17, … then 2, 10, …)."""
    found = [int(b.key.split("_")[-1]) for b in at.button_group if b.key and b.key.startswith("tri_dec_")]
    heights = [len(range(c, len(found), columns)) for c in range(columns)]
    by_column, start = [], 0
    for h in heights:
        by_column.append(found[start:start + h])
        start += h
    return [by_column[k % columns][k // columns] for k in range(len(found))]


def plotly_specs(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def test_the_desk_from_a_flagged_set_to_a_decided_one(clear_caches, media):
    at = ok(new_app())
    at.button(key="scn_train").click().run()
    assert not errors(ok(at))
    goto(at, "affected_image")
    goto(at, "influence_collapse")
    at.button(key="col_compute").click().run()
    ok(at)
    res = state(at).collapse.value

    # the collapse page: every toggle names the count its panel's title names (one number, one place)
    chips = at.button_group(key="col_transforms").options
    titles = [a["text"] for a in plotly_specs(at)[0]["layout"]["annotations"]]
    for title in titles[1:]:  # the first panel is the rule's statistic
        assert title in chips, (title, chips)
    assert titles[0].startswith("Collapse effect size d · delta flags d ≥ ")
    assert "broken only" not in titles[0] and "effect size 2.0" not in titles[0]
    cut = float(re.search(r"≥ ([0-9.]+)", titles[0]).group(1))
    line = plotly_specs(at)[0]["layout"]["shapes"][0]["y0"]
    assert round(line, 1) == cut and line > 2.0  # where the rule cut, not its candidate floor
    panels = {t.split(" · ")[0] for t in titles[1:]}
    silent = [c.split(" · ")[0] for c in chips if c.split(" · ")[0] not in panels]
    notes = " ".join(c.value for c in at.caption)
    for name in silent:  # a transformation without a panel says why
        assert f"{name[:1].upper() + name[1:]} has no panel" in notes, name

    goto(at, "triage")
    flagged = np.asarray(state(at).memo["flags"].value.flagged)
    n = len(flagged)
    assert metric(at, "Approved") == "0" and metric(at, "Undecided") == f"{n:,}"  # nothing pre-approved
    assert metric(at, "Recall") == "0.0%"

    # sort by one transformation's collapse: the tiles follow the core's order of the same evidence
    transforms = [t for t in res.queries.transforms_present() if t in at.session_state["col_transforms"]]
    tc = transform_collapse(res, np.sort(flagged), transforms, True)
    key = f"transform:{tc.transforms[0]}"
    at.selectbox(key="tri_sort").set_value(key).run()
    d = np.asarray(state(at).memo["flags"].value.statistic)[np.sort(flagged)]  # ties fall back to the rule's order
    table = TriageTable(np.sort(flagged), d, np.zeros(n, int), np.array(["flagged"] * n, dtype=object),
                        per_transform={t: tc.effect_size[:, j] for j, t in enumerate(tc.transforms)})
    expected = view_order(table, TriageView(sort=key)).tolist()
    assert tiles(ok(at)) == expected[:48]

    # a filter on the label-break rate, then "approve all shown": only what the filter shows is approved
    assert not [s for s in at.slider if s.key == "tri_lbr"]  # not measured for every candidate yet: no filter
    at.button(key="tri_measure_breaks").click().run()
    rates = label_break_rate(res, np.sort(flagged), transforms).rate
    at.slider(key="tri_lbr").set_value([50, 100]).run()
    keep = set(np.sort(flagged)[rates >= 0.5 - 1e-12].tolist())
    assert set(tiles(ok(at))) == keep or len(keep) > 48
    at.button(key="tri_all_yes").click().run()
    assert set(state(at).approved) == keep and metric(at, "Approved") == f"{len(keep):,}"
    at.button(key="tri_all_clear").click().run()
    assert state(at).approved == set()
    at.slider(key="tri_lbr").set_value([0, 100]).run()

    # the cut through the sorted view: the top k approved, the rest rejected
    k = max(1, n // 3)
    at.slider(key="tri_cut").set_value(k).run()
    assert any(f"The cut falls after tile {k} of {n}" in c.value for c in at.caption)
    at.button(key="tri_cut_apply").click().run()
    assert state(ok(at)).approved == set(expected[:k]) and state(at).rejected == set(expected[k:])
    assert metric(at, "Approved") == f"{k:,}" and metric(at, "Undecided") == "0"

    # decisions stay exact under paging: eight tiles a page, one undone on the last page only
    at.selectbox(key="tri_page_size").set_value(8).run()
    pages = int(at.number_input(key="tri_page").max)
    assert pages == -(-n // 8)
    seen = []
    for p in range(1, pages + 1):
        at.number_input(key="tri_page").set_value(p).run()
        seen += tiles(ok(at))
    assert seen == expected
    last = tiles(at)[-1]
    at.button_group(key=f"tri_dec_{last}").set_value(None).run()
    assert last not in state(at).approved | state(at).rejected
    assert state(at).approved | state(at).rejected == set(expected) - {last}

    # the evidence table, in words: the image's own label-break rate per transformation
    frame = at.dataframe[0].value
    assert "Transformation" in frame.columns and "Collapse d" in frame.columns
    assert "Label lost on this image's copies" in frame.columns and "break_rate" not in frame.columns
    assert not any(c in frame.columns for c in ("n_copies", "effect_size", "mean_delta"))

    # the exported list names the affected test images and the attack's classes
    payload = json.loads(media.downloaded(at, "Approved list (JSON)"))
    assert payload["affected_test_index"] and payload["affected_test_index"] == payload["scenario"][
        "affected_test_index"]
    assert len(payload["affected_test_index"]) == len(state(at).picked)
    attack = payload["scenario"]["attack"]
    assert payload["victim_class"] == attack["victim_class"] is not None and attack["target_class"] is not None
    assert payload["approved"] == sorted(state(at).approved) and payload["params"]["effect_size"] == 2.0
