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


class Downloads(list):
    """Every media store AppTest makes (one per run): what a download button of the last run holds."""

    def downloaded(self, at, label: str) -> bytes:
        button = next(b for b in at.get("download_button") if b.proto.label == label)
        return self[-1]._storage.get_file(button.proto.url.rsplit("/", 1)[-1]).content


@pytest.fixture
def media(monkeypatch) -> Downloads:
    """Record AppTest's media stores, so a test can read the bytes behind a download button."""
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.media_file_manager import MediaFileManager

    made = Downloads()

    class Recording(MediaFileManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(app_test, "MediaFileManager", Recording)
    return made
