"""Routing: the rules that choose a payment's pay org. The current version as a table,
editing as JSON with a required reason (role-checked, audited, refused when someone
published meanwhile), "which org would this payment take?" with each candidate's
availability now, the version history with a diff of any two versions, and the decisions
and fallbacks per rule and org.

Every reason and name a person typed is shown through ``md()`` (inert Markdown)."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from console.audit import recent, record
from console.auth import User, can
from console.pages import platform, require
from console.panel import panel
from console.safe import md
from console.views.depmap_live import breakers_now
from console.views.routing import (
    decision_rows,
    fallback_rows,
    granted_orgs,
    platform_availability,
    preview_markdown,
    preview_route,
    publish_text,
    rule_rows,
    ruleset_diff,
    version_rows,
)
from paycore.money import CURRENCIES
from paycore.routing.errors import RoutingError, StaleRuleSet
from paycore.routing.model import RouteQuery, RuleSet, rules_to_json
from paycore.routing.store import RoutingStore

ACTION = "routing.publish"
FLASH = "rt_flash"
WINDOWS = {"5 min": 300, "15 min": 900, "1 hour": 3600, "6 hours": 21600}

user = require("sre")
st.title("Routing")
p = platform()
store = RoutingStore(p.db)
may_publish = can(user.role, ACTION)

flash = st.session_state.pop(FLASH, None)
if flash:
    st.success(flash)
    st.toast(flash, icon=":material/check_circle:")


def _when(rs: RuleSet) -> str:
    return "" if rs.created_at is None else f" at {rs.created_at:%Y-%m-%d %H:%M} UTC"


def _reset_editor(rs: RuleSet) -> None:
    st.session_state["rt_base"] = rs.version
    st.session_state["rt_json"] = rules_to_json(rs.rules)
    st.session_state["rt_reason"] = ""


def _publish(me: User, base: int) -> None:
    """Publish the editor's JSON against ``base`` (audited either way); a refusal says why
    and writes nothing."""
    text, reason = st.session_state.get("rt_json", ""), st.session_state.get("rt_reason", "")
    detail: dict[str, Any] = {"expected_version": base, "reason": reason}
    try:
        made = publish_text(store, text, author=me.username, reason=reason, expected_version=base)
    except RoutingError as exc:
        record(
            p.db.engine,
            actor=me.username,
            role=me.role,
            action=ACTION,
            target="routing rules",
            detail={**detail, "ok": False, "error": str(exc)[:500]},
        )
        st.error(md(f"Not published: {exc}"))
        if isinstance(exc, StaleRuleSet):
            st.info("Reload the current rules, re-apply your change and publish again.")
        return
    record(
        p.db.engine,
        actor=me.username,
        role=me.role,
        action=ACTION,
        target="routing rules",
        detail={**detail, "version": made.version, "rules": len(made.rules), "ok": True},
    )
    st.session_state["rt_reset"] = True  # the editor opens on the new version
    st.session_state[FLASH] = (
        f"Routing rules version {made.version} published ({len(made.rules)} rules); "
        "every API replica takes them within a second."
    )
    st.rerun()


def editor(me: User, current: RuleSet) -> None:
    """The JSON editor against the version it was opened on, with a required reason."""
    if not may_publish:
        st.caption(
            f"Your role ({md(me.role)}) may read the routing rules; publishing them needs "
            "the operator role or above."
        )
        st.code(rules_to_json(current.rules), language="json")
        return
    if st.session_state.pop("rt_reset", False) or "rt_base" not in st.session_state:
        _reset_editor(current)
    base = int(st.session_state["rt_base"])
    if base != current.version:
        st.warning(
            f"Version {current.version} was published by {md(current.author)} since you "
            f"opened the editor on version {base}: publishing this edit will be refused."
        )
        st.button(
            "Reload the current rules", key="rt_reload", on_click=_reset_editor, args=(current,)
        )
    st.text_area(
        f"Rules (JSON), editing version {base}",
        key="rt_json",
        height=320,
        help='A list of rules: {"name", "priority", "targets": [{"pay_org_no", "weight"}], '
        '"fallback": [...], match fields merchant_id, order_type, sub_type, currency, '
        "user_segment, amount_min, amount_max (absent: any)}. Lower priority is tried first.",
    )
    st.text_input("Reason (required)", key="rt_reason", max_chars=512)
    if st.button("Publish", key="rt_publish", type="primary"):
        _publish(me, base)


def preview_form(current: RuleSet) -> None:
    """ "Which org would this payment take?" under the current rules, with availability."""
    orgs = list(p.settings.pay_orgs)
    with st.form("rt_preview"):
        c1, c2, c3 = st.columns(3)
        merchant = c1.text_input("Merchant", key="rt_pv_merchant")
        order_type = c2.text_input("Order type", value="goods", key="rt_pv_order_type")
        sub_type = c3.text_input("Sub type", value="physical", key="rt_pv_sub_type")
        c4, c5, c6, c7 = st.columns(4)
        amount = c4.number_input(
            "Amount (minor units)", min_value=1, value=1000, step=100, key="rt_pv_amount"
        )
        currency = c5.selectbox("Currency", list(CURRENCIES), key="rt_pv_currency")
        segment = c6.text_input("User segment", key="rt_pv_segment")
        default = c7.selectbox("Trade's pay org", orgs, key="rt_pv_default")
        asked = st.form_submit_button("Which org would this payment take?")
    if not asked:
        return
    granted = granted_orgs(p.db.engine, merchant.strip())
    if not granted:
        st.warning(
            f"Merchant {md(merchant) or '(none)'} is granted no pay org: no rule can route it "
            "(a pay would be refused before routing)."
        )
    q = RouteQuery(
        merchant_id=merchant.strip(),
        order_type=order_type.strip(),
        sub_type=sub_type.strip(),
        amount=int(amount),
        currency=str(currency),
        user_segment=segment.strip() or None,
        default_org=str(default),
        granted=granted,
    )
    rt = p.stability
    availability = platform_availability(
        rt.switches.snapshot().degraded, breakers_now(rt, p.db.engine), rt.guard
    )
    pv = preview_route(current, q, availability)
    st.markdown(preview_markdown(pv, md))
    st.caption(
        "A rule with several weighted targets sends each pay by weight; the preview takes "
        "its first weighted target. Availability: switches in force, breakers open in any "
        "process, bulkheads."
    )


def history(rows: list[RuleSet]) -> None:
    st.dataframe(version_rows(rows), hide_index=True, key="rt_versions")
    if not rows:
        st.caption("No version published yet.")
        return
    versions = [rs.version for rs in rows] + ([0] if rows[-1].version == 1 else [])
    c1, c2 = st.columns(2)
    new = c1.selectbox("Compare version", versions, index=0, key="rt_diff_new")
    old = c2.selectbox("with version", versions, index=min(1, len(versions) - 1), key="rt_diff_old")
    by = {rs.version: rs for rs in rows}
    diff = ruleset_diff(by.get(old) or store.get(old), by.get(new) or store.get(new))
    if diff:
        st.code(diff, language="diff")
    else:
        st.caption("The two versions hold the same rules.")


with panel("Current rules", "database"):
    current = store.current()
    if current.version == 0:
        st.caption(
            "No routing rules published: every payment takes its trade's pay org (rule default)."
        )
    else:
        st.markdown(
            f"Version **{current.version}** by {md(current.author)}{_when(current)}: "
            f"{md(current.reason)}"
        )
        st.dataframe(rule_rows(current.rules), hide_index=True, key="rt_rules")

with panel("Edit rules", "database"):
    editor(user, store.current())

with panel("Which org would this payment take?", "database"):
    preview_form(store.current())

with panel("Versions", "database"):
    history(store.history(50))

with panel("Decisions and fallbacks", "metrics"):
    label = st.radio("Window", list(WINDOWS), index=2, horizontal=True, key="rt_window")
    q, t = p.observability.query, time.time()
    window = float(WINDOWS[str(label)])
    left, right = st.columns(2)
    decided = decision_rows(q, t, window=window)
    left.markdown("**Decisions per rule and org**")
    if decided:
        left.dataframe(decided, hide_index=True, key="rt_decisions")
    else:
        left.caption("No routed payment in the window.")
    fell = fallback_rows(q, t, window=window)
    right.markdown("**Fallbacks (org skipped → org taken)**")
    if fell:
        right.dataframe(fell, hide_index=True, key="rt_fallbacks")
    else:
        right.caption("No fallback in the window.")

with panel("Routing audit log", "database"):
    st.dataframe(recent(p.db.engine, 100, action=ACTION), hide_index=True, key="rt_audit")
