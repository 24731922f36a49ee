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
