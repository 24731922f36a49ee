"""The investigations list: every saved record with its columns; open, rename and delete act on the store."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from deltainf_core import Scenario
from deltainf_core.investigations import InvestigationStore


def list_page():
    from pages import ui

    ui.init_state()
    ui.investigation_list()


def test_list_open_rename_delete(clear_caches, cache_dir):
    store = InvestigationStore(f"{cache_dir}/investigations")
    first = store.create("first case", scenario=Scenario().as_dict(), model_key="k1")
    second = store.create("", scenario=Scenario().as_dict())
    at = AppTest.from_function(list_page, default_timeout=60).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "first case" in text and "mnist5k · smallcnn · badnet" in text and "model ready" in text

    at.button(key=f"ws_open_{first}").click().run()
    assert at.query_params["investigation"] == first  # app.py restores it on this rerun

    at.text_input(key=f"ws_name_{second}").set_value("renamed")
    at.button(key=f"ws_rename_{second}").click().run()
    assert store.load(second).name == "renamed"

    at.button(key=f"ws_del_{first}").click().run()
    assert not store.exists(first) and store.exists(second)
    assert not at.exception
    assert all(f"ws_open_{first}" != b.key for b in at.button)
