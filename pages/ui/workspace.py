"""The list of saved investigations (the Scenario page shows it): open, rename, delete, start anew."""

from __future__ import annotations

import streamlit as st

from deltainf_core.investigations import STATUS_TEXT, InvestigationError

from .jobs import attempt
from .persist import PARAM, start_new, store
from .state import session

SHOWN = 12
"""Investigations listed before "show all"."""
WIDTHS = [2.6, 1.8, 1.5, 1.4, 1.9, 3.8]
"""Name, last changed, dataset, model, status, actions: the actions get room for three labelled buttons."""


def _open(inv_id: str) -> None:
    st.query_params[PARAM] = inv_id  # app.py's bind() restores it at the start of the rerun


def _new() -> None:
    start_new()


def _rename(inv_id: str, key: str) -> None:
    name = st.session_state.get(key, "")
    try:
        store().rename(inv_id, name)
    except InvestigationError as err:
        st.session_state["ws_error"] = str(err)


def _delete(inv_id: str) -> None:
    try:
        store().delete(inv_id)
    except InvestigationError as err:
        st.session_state["ws_error"] = str(err)
        return
    if session().inv_id == inv_id:
        start_new()


def investigation_list() -> None:
    """Earlier investigations (name, date, dataset, model, status) with open / rename / delete."""
    ok, items = attempt("Listing the saved investigations", lambda: store().list())
    if not ok:
        return
    current = session().inv_id
    label = f"Saved investigations ({len(items)})" if items else "Saved investigations"
    with st.expander(label, expanded=bool(items) and current is None, icon=":material/folder_open:"):
        error = st.session_state.pop("ws_error", None)
        if error:
            st.error(error)
        top = st.columns([3, 1], vertical_alignment="center")
        top[0].caption("Every investigation is saved as it changes; its address (the `?investigation=` part of "
                       "the URL) reopens it after a reload, in another tab or after a restart.")
        top[1].button("New investigation", on_click=_new, icon=":material/add:", key="ws_new",
                      disabled=current is None and session().active is None)
        if not items:
            st.caption("None yet: the first model trained or loaded starts one.")
            return
        show_all = len(items) <= SHOWN or st.toggle(f"Show all {len(items)}", key="ws_all")
        head = st.columns(WIDTHS)
        for col, text in zip(head, ["Name", "Last changed", "Dataset", "Model", "Status", ""], strict=True):
            col.markdown(f"**{text}**")
        for item in items if show_all else items[:SHOWN]:
            row = st.columns(WIDTHS, vertical_alignment="center")
            here = item.id == current
            row[0].markdown(f"{'▶ ' if here else ''}{item.name}" + (" *(open)*" if here else ""))
            row[1].caption(item.updated.replace("T", " ")[:16])
            row[2].caption(item.dataset or "—")
            row[3].caption(item.model or "—")
            row[4].caption(item.error or STATUS_TEXT.get(item.status, item.status))
            # the buttons keep their own width and wrap onto a second line rather than being cut to "O…"
            actions = row[5].container(horizontal=True, wrap=True, gap="small")
            actions.button("Open", key=f"ws_open_{item.id}", on_click=_open, args=(item.id,),
                           disabled=here or item.error is not None, help=f"reopen {item.id}")
            with actions.popover("Rename", disabled=item.error is not None):
                key = f"ws_name_{item.id}"
                st.text_input("New name", value=item.name, key=key)
                st.button("Save name", key=f"ws_rename_{item.id}", on_click=_rename, args=(item.id, key))
            with actions.popover("Delete"):
                st.caption(f"Delete **{item.name}**? The cached models and scores stay; only the record goes.")
                st.button("Delete", key=f"ws_del_{item.id}", on_click=_delete, args=(item.id,), type="primary")
