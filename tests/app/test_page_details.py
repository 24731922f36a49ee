"""Small things the pages must get right: what the Affected image page says with five images picked and
where it refuses a sixth, one mean/std value per channel for one-channel data, and model downloads that
are ready before the click (no file built lazily on it)."""

from __future__ import annotations

import io

import pytest
import torch
from app_driver import errors, goto, new_app, ok, state


def _walk(node):
    for child in getattr(node, "children", {}).values():
        yield child
        yield from _walk(child)


def test_mean_and_std_placeholders_have_one_value_per_channel(clear_caches):
    at = ok(new_app())
    boxes = {t.key: t for t in at.text_input}
    assert boxes["scn_input_mean"].proto.placeholder == "0.1307"  # the built-in digits: one channel
    assert boxes["scn_input_std"].proto.placeholder == "0.3081"
    at.selectbox(key="scn_dataset").set_value("cifar10").run()
    boxes = {t.key: t for t in at.text_input}
    assert boxes["scn_input_mean"].proto.placeholder.count(",") == 2  # three channels


def test_five_picks_and_a_sixth_refused_beside_the_picker(clear_caches):
    at = ok(new_app(scn_max_affected=5))
    at.button(key="scn_train").click().run()
    assert not errors(ok(at))
    goto(at, "affected_image")
    picked = list(state(at).picked)
    boxes = [c for c in at.checkbox if c.key and c.key.startswith("aff_use_psr_")]
    if len(picked) < 5 or len(boxes) < 6:
        pytest.skip("the tiny model shows fewer than six affected images")
    lead = next(m.value for m in at.markdown if "triggered test images" in m.value)
    assert "5 picked, the most scored together" in lead and "Pick one" not in lead
    next(c for c in boxes if not c.value).check().run()
    assert state(ok(at)).picked == picked  # refused
    tree = [f"{type(el).__name__}:{getattr(el, 'value', '')}" for el in _walk(at.main)]
    warned = next(k for k, t in enumerate(tree) if "At most 5 affected images are scored together" in t)
    lead_at = next(k for k, t in enumerate(tree) if "triggered test images" in t)
    first_tile = next(k for k, t in enumerate(tree) if t.startswith("Checkbox:"))
    assert lead_at < warned < first_tile  # after the gallery's lead, right above its tiles, not atop the page


def test_the_unlearned_model_is_ready_before_the_click(clear_caches, media):
    at = ok(new_app())
    at.button(key="scn_train").click().run()
    goto(at, "affected_image")
    goto(at, "influence_collapse")
    at.button(key="col_compute").click().run()
    goto(at, "triage")
    at.button(key="tri_all_yes").click().run()
    goto(at, "unlearn")
    at.button(key="unl_run").click().run()
    assert not errors(ok(at))
    button = next(b for b in at.get("download_button") if b.proto.label == "Unlearned model")
    assert button.proto.url and not button.proto.deferred_file_id  # bytes made in the run, not on the click
    assert button.proto.ignore_rerun  # and the click does not rerun the page
    payload = torch.load(io.BytesIO(media.downloaded(at, "Unlearned model")), weights_only=True)
    assert payload["format"].startswith("deltainf-checkpoint") and payload["state_dict"]
    assert len(payload["state_dict"]) == len(state(at).unlearned.outcome.model.state_dict())


def test_the_scenario_page_offers_the_compute_engine_with_the_cli_help(clear_caches):
    from dataclasses import fields

    from deltainf_core.config import ComputeConfig

    at = ok(new_app())
    assert "Compute engine" in [e.label for e in at.expander]
    engine = next(r for r in at.radio if r.label == "Engine")
    assert list(engine.options) == ["local", "ray"] and engine.value == "local"
    assert engine.help == next(f.metadata["help"] for f in fields(ComputeConfig) if f.name == "engine")
