"""The app's engine widget (``pages/ui/engine.py``): the choice is applied to the pipeline, a cluster that does
not answer is one error naming it (the engine stays as it was), and the units' bar names a retried unit."""

from __future__ import annotations

import socket

import pytest
from streamlit.testing.v1 import AppTest


def panel():
    import streamlit as st

    from deltainf_core import Pipeline, Store
    from pages.ui.engine import engine_panel

    if "pipe" not in st.session_state:
        st.session_state.pipe = Pipeline(Store(st.session_state.cache))
    compute = engine_panel(st.session_state.pipe)
    st.markdown(f"running on {compute.engine}, {compute.train_workers} training workers")


def bar():
    from deltainf_core.scaleout.driver import UnitStatus
    from pages.ui.engine import UnitProgress

    UnitProgress()(UnitStatus("fitting ekfac factors:", 9, done=4, running=2, retried=["lambda1"], fraction=0.5,
                              eta_s=40.0))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ran(at: AppTest) -> str:
    assert not at.exception
    return " ".join(m.value for m in at.markdown)


def test_the_choice_reaches_the_pipeline_and_a_dead_address_is_one_error(tmp_path):
    pytest.importorskip("ray")
    at = AppTest.from_function(panel, default_timeout=60)
    at.session_state.cache = str(tmp_path)
    assert "running on local, 1 training workers" in _ran(at.run())
    at.number_input(key="engine.workers").set_value(2).run()
    assert "running on local, 1 training workers" in _ran(at)  # applied by its button only
    at.button(key="engine.apply").click().run()
    assert "running on local, 2 training workers" in _ran(at)  # torchrun trains from now on
    address = f"127.0.0.1:{_closed_port()}"
    at.radio(key="engine.engine").set_value("ray")
    at.text_input(key="engine.address").set_value(address).run()
    at.button(key="engine.apply").click().run()
    assert [e.value for e in at.error] == [at.error[0].value] and f"cannot reach the Ray cluster at {address}" in \
        at.error[0].value
    assert "running on local, 2 training workers" in _ran(at)


def test_the_units_bar_names_a_retried_unit():
    at = AppTest.from_function(bar, default_timeout=60).run()
    assert not at.exception
    text = at.get("progress")[0].proto.text
    assert "4/9 units" in text and "2 running" in text and "lambda1" in text and "ETA 40s" in text
