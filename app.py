"""Δ-Influence investigation app: ``streamlit run app.py``.

The entry point only sets the page up, keeps the analyst's choices alive across
pages, lists the steps (SPEC §2) and shows a summary of the investigation in the
sidebar. Every page is UI only; all computation goes through ``deltainf_core``; the
pages' shared helpers are the package ``pages/ui`` (not a page: the list below is explicit).
"""

from __future__ import annotations

import streamlit as st

from pages import ui

st.set_page_config(page_title="Δ-Influence", page_icon=":material/troubleshoot:", layout="wide",
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

page = st.navigation(PAGES)
st.sidebar.caption("Trace a poisoning attack from one misbehaving test image to the training images "
                   "responsible, then unlearn them.")
summary = st.sidebar.container()
try:
    page.run()
finally:
    # Drawn after the page, so it already reflects what the page just did.
    with summary:
        ui.sidebar_summary()
