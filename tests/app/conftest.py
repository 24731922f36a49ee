"""Fixtures for the app tests."""

from __future__ import annotations

import pytest
import streamlit as st


@pytest.fixture
def clear_caches(cache_dir):
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(autouse=True)
def app_py_runs_every_time(monkeypatch):
    """Run app.py on every AppTest run, as the server does after its first run.

    AppTest forgets before each run that ``st.navigation`` switched off the v1 reading of
    the ``pages/`` folder, and would then run a sub-page without ``app.py`` (no binding to
    the saved investigation, no sidebar). The server keeps the switch for its lifetime.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
