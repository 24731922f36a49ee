"""Streamlit's "magic" writes every bare expression of a page script onto the page: a page may hold
no string statement but its module docstring (an attribute docstring would show as page text)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PAGES = sorted((Path(__file__).resolve().parents[2] / "pages").glob("*.py"))


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_no_stray_strings_render_as_page_text(page):
    tree = ast.parse(page.read_text())
    stray = [node.lineno for node in tree.body[1:]
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value,
                                                                                                    str)]
    assert stray == [], f"{page.name}: bare strings at lines {stray} would render on the page"
