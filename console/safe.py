"""User text made inert before Streamlit renders it.

Streamlit renders Markdown (and so images, links and emphasis) in ``st.markdown``,
``st.write`` of a string, captions, alerts, metric labels, expander and tab labels and
widget labels. Anything a user typed (a reason, a name, a comment, an alert label) goes
through :func:`md` before it reaches one of those, so ``![px](http://…)`` shows as those
characters and is never fetched. Tables (``st.dataframe``) do not render Markdown.
"""

from __future__ import annotations

import re
from typing import Any

# every character with a meaning in CommonMark, GitHub extensions or Streamlit's own
# directives (``:red[…]``, ``:material/…:``, ``$…$``), plus the HTML brackets
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&\"'])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# GFM links bare URLs and e-mail addresses even when their punctuation is escaped: a
# zero-width space inside "://", "www." and after "@" leaves the text as it reads, unlinked
_AUTOLINK = re.compile(r"(?i)(:(?=//)|www(?=\.)|@)")
ZWSP = "\u200b"


def md(value: Any) -> str:
    """``value`` as text that Markdown shows verbatim (one line: newlines become spaces)."""
    text = _CONTROL.sub("", "" if value is None else str(value))
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    text = _AUTOLINK.sub(lambda m: m.group(0) + ZWSP, text)
    return _SPECIAL.sub(r"\\\1", text)
