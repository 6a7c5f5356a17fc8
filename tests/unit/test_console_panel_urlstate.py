"""A failing panel shows one line naming its source and the page goes on; URL-bound
widgets start from the URL and write their value back."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

PANELS = """
import streamlit as st
from console.panel import panel

with panel("Core links", "metrics"):
    raise ConnectionError("/srv/paywatch/secret/path.py line 3")
with panel("Backlogs", "database"):
    st.write("backlog 3")
"""


def test_a_failing_panel_fails_alone_without_a_traceback():
    at = AppTest.from_string(PANELS).run()
    assert not at.exception
    assert [w.value for w in at.warning] == [
        "The metrics source is unavailable (ConnectionError); this panel will show again "
        "when it answers."
    ]
    assert "backlog 3" in [m.value for m in at.markdown]
    captions = [c.value for c in at.caption]
    assert len(captions) == 1 and captions[0].startswith("updated ")
    assert "database" in captions[0]
    assert all("/srv/paywatch" not in str(e.value) for e in (*at.warning, *at.markdown))


URL = """
import streamlit as st
from console.urlstate import url_select, url_text
window = url_select("Window", ["1h", "1d", "7d"], key="window", default="1h")
org = url_text("Pay org", key="org")
st.write(f"{window}|{org}")
"""


def test_url_widgets_start_from_the_url_and_write_back():
    at = AppTest.from_string(URL)
    at.query_params["window"] = "7d"
    at.query_params["org"] = "SANDBOX_B"
    at.run()
    assert at.markdown[0].value == "7d|SANDBOX_B"
    at.selectbox(key="url_window").set_value("1d").run()
    assert at.query_params["window"] in ("1d", ["1d"])
    at2 = AppTest.from_string(URL)
    at2.query_params["window"] = "bogus"
    at2.run()
    assert at2.markdown[0].value == "1h|"  # an unknown value falls back to the default
    assert at2.query_params["window"] in ("1h", ["1h"])
