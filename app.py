"""Δ-Influence investigation app: ``streamlit run app.py``.

The entry point only sets the page up, binds the browser session to its saved
investigation (``?investigation=<id>``: a reload, a second tab or a restarted server
reopens it), lists the steps (SPEC §2) and shows a summary in the sidebar. Every page
is UI only; all computation goes through ``deltainf_core``; the pages' shared helpers
are the package ``pages/ui`` (not a page: the list below is explicit, and Streamlit's
own page discovery is off in ``.streamlit/config.toml``).
"""

from __future__ import annotations

import os

import streamlit as st
from PIL import Image
from streamlit.runtime.pages_manager import PagesManager

from pages import ui

if PagesManager.uses_pages_directory:
    # A fresh server's first run reads pages/ the v1 way (app.py run as one of its pages, the
    # raw files listed); st.navigation below switches that off for good: start over as v2.
    PagesManager.uses_pages_directory = False
    st.rerun()

ICON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "icon.png")

st.set_page_config(page_title="Δ-Influence", page_icon=Image.open(ICON), layout="wide",
                   initial_sidebar_state="expanded")
ui.init_state()

PAGES = [
    st.Page("pages/scenario.py", title="1 · Scenario", icon=":material/model_training:", default=True),
    st.Page("pages/affected_image.py", title="2 · Affected image", icon=":material/image_search:"),
    st.Page("pages/influence_collapse.py", title="3 · Influence collapse", icon=":material/scatter_plot:"),
    st.Page("pages/triage.py", title="4 · Triage", icon=":material/fact_check:"),
    st.Page("pages/unlearn.py", title="5 · Unlearn", icon=":material/cleaning_services:"),
    st.Page("pages/compare.py", title="Compare methods", icon=":material/leaderboard:"),
]

page = st.navigation(PAGES, position="hidden")
with st.sidebar:
    for p in PAGES:
        st.page_link(p)
    st.caption("Trace a poisoning attack from one misbehaving test image to the training images "
               "responsible, then unlearn them.")
summary = st.sidebar.container()
ui.bind_investigation()
try:
    page.run()
finally:
    # After the page, so the record and the sidebar reflect what the page just did.
    ui.save_investigation()
    with summary:
        ui.sidebar_summary()
