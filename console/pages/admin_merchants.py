"""Admin: merchants' credentials: rotate or revoke an API token, rotate the notification
signing secret, disable or enable a merchant, set how its trades end (unpaid expiry,
guaranteed auto-confirm hold, paying on without a coupon when the coupon service is out)
(each audited; admins only).

A new token or secret is shown once, on the run that made it, and never again: the
audit row keeps its prefix only. Changes reach every API replica within the merchant
cache's TTL (5 s). Page convention: see :mod:`console.pages.ops_compensation`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import streamlit as st

from console.panel import panel
from console.reports.context import page_context, run_audited
from console.safe import md
from paycore.merchants import DISABLED, describe
from paycore.merchants.credentials import CONFIRM_HOLD_RANGE_S, TRADE_EXPIRY_RANGE_S


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Merchants")
    if not c.can("merchant.manage"):
        st.error("Only admins manage merchants' credentials.")
        return
    service = c.core.merchants
    merchants: list[Any] | None = None
    with panel(None, "database"):
        merchants = service.merchants()
    if merchants is None:
        return
    if not merchants:
        st.info("No merchants yet (`paywatch merchant add`).")
        return
    listing = st.container()  # filled last, so it shows what this run's action changed
    labels = {m.merchant_id: f"{m.merchant_id} · {m.name}" for m in merchants}
    mid = st.selectbox(
        "Merchant", list(labels), format_func=labels.__getitem__, key="merchant_target"
    )
    with panel(None, "database"):
        _tokens(c, service, mid)
    with panel(None, "database"):
        _notify_secret(c, service, mid)
    with panel(None, "database"):
        _status(c, service, mid)
    with panel(None, "database"):
        _trade_settings(c, service, mid)
    with listing, panel(None, "database"):
        st.dataframe(
            [
                {
                    "merchant_id": m.merchant_id,
                    "name": m.name,
                    "status": m.status,
                    "notify_url": m.notify_url,
                    "created_at": m.created_at,
                }
                for m in service.merchants()
            ],
            hide_index=True,
        )
    with panel("Credentials of " + md(mid), "database"):
        now = c.now()
        st.dataframe(
            [{"kind": "API token", **describe(t, now)} for t in service.tokens(mid)]
            + [
                {"kind": "notification secret", **describe(n, now)}
                for n in service.notify_secrets(mid)
            ],
            hide_index=True,
        )


def _shown_once(what: str, value: str, note: str) -> None:
    st.warning(f"The new {what} is shown once, now: copy it to the merchant. {note}")
    st.code(value, language=None)


def _tokens(c: Any, service: Any, mid: str) -> None:
    st.subheader("API token")
    grace_h = st.number_input(
        "Grace for the current tokens (hours; 0 for a leaked token)",
        min_value=0.0,
        max_value=720.0,
        value=24.0,
        step=1.0,
        key="merchant_grace_h",
    )
    if st.button("Rotate token", key="merchant_rotate_token"):
        grace = timedelta(hours=grace_h)
        ok, res = run_audited(
            c,
            "merchant.token.rotate",
            f"merchant:{mid}",
            {"grace_s": int(grace.total_seconds())},
            lambda: service.rotate_token(mid, grace=grace),
        )
        if ok:
            _shown_once(
                "API token",
                res.token,
                f"Older tokens work until {res.old_valid_until:%Y-%m-%d %H:%M:%S} UTC.",
            )
        else:
            st.error(f"Failed: {md(res)}")
    now = c.now()
    valid = [t.prefix for t in service.tokens(mid) if t.state(now) in ("active", "grace")]
    if not valid:
        st.info("This merchant has no valid token: rotate to issue one.")
        return
    prefix = st.selectbox("Token to revoke", valid, key="merchant_revoke_prefix")
    sure = st.checkbox("Calls with this token fail at once", key="merchant_revoke_confirm")
    if st.button("Revoke token", key="merchant_revoke_token"):
        if not sure:
            st.error("Tick the box to confirm the revocation.")
            return
        ok, res = run_audited(
            c,
            "merchant.token.revoke",
            f"merchant:{mid}",
            {"prefix": prefix},
            lambda: service.revoke_token(mid, prefix),
        )
        if ok:
            st.success(f"Token {md(prefix)}… revoked; every replica refuses it within seconds.")
        else:
            st.error(f"Failed: {md(res)}")


def _notify_secret(c: Any, service: Any, mid: str) -> None:
    st.subheader("Notification signing secret")
    overlap_h = st.number_input(
        "Overlap: hours the old secret also signs",
        min_value=0.0,
        max_value=720.0,
        value=24.0,
        step=1.0,
        key="merchant_overlap_h",
    )
    if st.button("Rotate notification secret", key="merchant_rotate_secret"):
        overlap = timedelta(hours=overlap_h)
        ok, res = run_audited(
            c,
            "merchant.notify_secret.rotate",
            f"merchant:{mid}",
            {"overlap_s": int(overlap.total_seconds())},
            lambda: service.rotate_notify_secret(mid, overlap=overlap),
        )
        if ok:
            _shown_once(
                "notification secret",
                res.secret,
                "Until "
                f"{res.old_valid_until:%Y-%m-%d %H:%M:%S} UTC notifications carry a "
                "signature under the old secret too.",
            )
        else:
            st.error(f"Failed: {md(res)}")


def _status(c: Any, service: Any, mid: str) -> None:
    st.subheader("Status")
    info = service.get(mid)
    st.write(f"**{md(info.status)}**")
    action, label = (
        ("enable", "Enable merchant")
        if info.status == DISABLED
        else ("disable", "Disable merchant")
    )
    if st.button(label, key=f"merchant_{action}"):
        ok, res = run_audited(
            c, f"merchant.{action}", f"merchant:{mid}", {}, lambda: getattr(service, action)(mid)
        )
        if ok:
            st.success(f"{md(mid)} is {md(res.status)}; every replica follows within seconds.")
        else:
            st.error(f"Failed: {md(res)}")


def _trade_settings(c: Any, service: Any, mid: str) -> None:
    st.subheader("How trades end")
    info = service.get(mid)
    st.caption(
        f"Now: unpaid trades close after {info.trade_expiry_s} s; paid guaranteed trades "
        f"confirm after {info.confirm_hold_s} s; a coupon outage "
        + (
            "lets the pay go on without the coupon."
            if info.pay_without_coupon
            else "fails the pay."
        )
    )
    expiry = st.number_input(
        "Unpaid trades close after (seconds)",
        min_value=TRADE_EXPIRY_RANGE_S[0],
        max_value=TRADE_EXPIRY_RANGE_S[1],
        value=int(info.trade_expiry_s),
        step=60,
        key=f"merchant_trade_expiry_s_{mid}",
    )
    hold = st.number_input(
        "Paid guaranteed trades confirm after (seconds)",
        min_value=CONFIRM_HOLD_RANGE_S[0],
        max_value=CONFIRM_HOLD_RANGE_S[1],
        value=int(info.confirm_hold_s),
        step=3600,
        key=f"merchant_confirm_hold_s_{mid}",
    )
    without = st.checkbox(
        "Pay without the coupon when the coupon service is out",
        value=bool(info.pay_without_coupon),
        key=f"merchant_pay_without_coupon_{mid}",
    )
    wanted = {
        "trade_expiry_s": int(expiry),
        "confirm_hold_s": int(hold),
        "pay_without_coupon": bool(without),
    }
    changed = {k: v for k, v in wanted.items() if getattr(info, k) != v}
    if st.button("Save trade settings", key="merchant_configure"):
        if not changed:
            st.info("Nothing changed.")
            return
        ok, res = run_audited(
            c,
            "merchant.configure",
            f"merchant:{mid}",
            {"changes": changed, "before": {k: getattr(info, k) for k in changed}},
            lambda: service.configure(mid, **changed),
        )
        if ok:
            st.success(
                f"{md(mid)}: {md(', '.join(f'{k}={v}' for k, v in changed.items()))}; "
                "every replica follows within seconds."
            )
        else:
            st.error(f"Failed: {md(res)}")


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("merchant.manage")
    render(platform(), _user)
