"""User text is inert in Markdown: Streamlit's own renderer shows it verbatim."""

from __future__ import annotations

import re

import pytest

from console.safe import md

HOSTILE = [
    "![px](http://127.0.0.1:9/tracking-pixel.png)",
    "**bold** _it_ `code` ~~gone~~",
    "[click](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    ":red[alarm] :material/warning: $x^2$",
    "# heading\n- item\n> quote",
    "| a | b |\n|---|---|",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_renders_as_its_characters(text):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_string(
        "import streamlit as st\nfrom console.safe import md\n"
        f"st.markdown(md({text!r}))\nst.caption(md({text!r}))\n"
    ).run()
    assert not at.exception
    shown = at.markdown[0].value
    # what the user typed, character for character, once the escapes are read
    unescaped = shown.replace("\\", "").replace("\u200b", "")
    assert unescaped == text.replace("\\", "").replace("\n", " ")
    # no special character is left bare (each is preceded by its escape)
    assert not re.search(r"(?<!\\)[!*_`\[\]()<>:$#|~]", shown.replace("\\\\", "")), shown


@pytest.mark.parametrize(
    "text", ["see http://127.0.0.1:9/p.png now", "www.example.com", "mail ops@example.com"]
)
def test_bare_urls_and_addresses_are_not_linked(text):
    shown = md(text)
    assert "://" not in shown and "www." not in shown.replace("\\", "")
    assert "@" not in shown or "@\u200b" in shown
    assert shown.replace("\\", "").replace("\u200b", "") == text


def test_control_characters_are_dropped():
    assert md("a\x00b\x1bc") == "abc"
    assert md(None) == ""
