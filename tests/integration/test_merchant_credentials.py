"""Merchant credentials on real databases: token rotation with grace, revocation, disabling,
the migration of existing merchants, and the `paywatch merchant ...` commands with their
audit rows.

Propagation is tested with two :class:`PayCore` instances over one PostgreSQL schema
(two API replicas); clocks are set by the test.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import Clock
from merchant_cores import T0, onboard, one, replicas, rows, trade  # noqa: F401 - fixture

from paycore import Database, PayCore
from paycore.db.schema import Merchant, MerchantApiToken, MerchantNotifySecret, Trade
from paycore.errors import (
    AuthenticationFailed,
    InvalidRequest,
    MerchantDisabled,
    TokenNotFound,
    UnknownMerchant,
)


# -- tokens --------------------------------------------------------------------------------
def test_revocation_and_disabling_reach_the_other_replica_within_its_ttl(replicas):
    api, admin, _clock = replicas
    ob = onboard(admin)
    mid = ob.merchant.merchant_id
    assert api.merchants.authenticate(ob.token).merchant_id == mid  # cached by the replica

    admin.merchants.revoke_token(mid, ob.token[:10])
    with pytest.raises(AuthenticationFailed):  # the admin's own replica: at once
        admin.merchants.authenticate(ob.token)
    assert api.merchants.authenticate(ob.token).merchant_id == mid  # stale, within the TTL
    time.sleep(0.35)
    with pytest.raises(AuthenticationFailed):
        api.merchants.authenticate(ob.token)
    assert api.merchants.cached_authentication(ob.token) is None

    new = admin.merchants.rotate_token(mid, grace=timedelta(0))
    assert api.merchants.authenticate(new.token).merchant_id == mid
    trade(api, mid, "t1")
    admin.merchants.disable(mid)
    assert api.merchants.authenticate(new.token).status == "active"  # stale, within the TTL
    time.sleep(0.35)
    for call in (lambda: api.merchants.authenticate(new.token), lambda: trade(api, mid, "t2")):
        with pytest.raises(MerchantDisabled):
            call()
    assert api.merchants.cached_authentication(new.token) is None
    assert rows(api.db, Trade) == 1  # the disabled merchant wrote nothing
    admin.merchants.enable(mid)
    time.sleep(0.35)
    assert api.merchants.authenticate(new.token).status == "active"
    trade(api, mid, "t2")


def test_a_rotated_token_is_valid_to_the_end_of_its_grace_exactly(replicas):
    api, admin, clock = replicas
    ob = onboard(admin)
    mid = ob.merchant.merchant_id
    api.merchants.authenticate(ob.token)
    issued = admin.merchants.rotate_token(mid, grace=timedelta(hours=2))
    assert issued.old_valid_until == T0 + timedelta(hours=2)
    assert issued.prefix == issued.token[:10] and issued.token not in repr(issued)
    time.sleep(0.35)  # the replica has read the rotation
    clock.now = T0 + timedelta(hours=2) - timedelta(microseconds=1)
    for _ in range(5):  # cached for 0.3 s: a stall between the two calls may outlast it
        assert api.merchants.authenticate(ob.token).merchant_id == mid
        if api.merchants.cached_authentication(ob.token) is not None:
            break
    else:
        pytest.fail("the replica never cached the old token's grant")
    clock.now = T0 + timedelta(hours=2)  # the cached grant knows its end: no wait
    with pytest.raises(AuthenticationFailed):
        api.merchants.authenticate(ob.token)
    assert api.merchants.cached_authentication(ob.token) is None
    assert api.merchants.authenticate(issued.token).merchant_id == mid
    states = {t.prefix: t.state(clock.now) for t in admin.merchants.tokens(mid)}
    assert states == {ob.token[:10]: "expired", issued.prefix: "active"}
    with admin.db.session() as s:  # merchants.token_hash names the newest token
        assert s.get(Merchant, mid).token_prefix == issued.prefix


def test_a_second_rotation_never_extends_an_older_tokens_grace(one):
    ob = onboard(one)
    mid = ob.merchant.merchant_id
    first = one.merchants.rotate_token(mid, grace=timedelta(hours=1))
    one.clock.now = T0 + timedelta(minutes=30)
    second = one.merchants.rotate_token(mid, grace=timedelta(hours=24))
    ends = {t.prefix: t.expires_at for t in one.merchants.tokens(mid)}
    assert ends == {
        ob.token[:10]: T0 + timedelta(hours=1),
        first.prefix: T0 + timedelta(minutes=30, hours=24),
        second.prefix: None,
    }
    one.clock.now = T0 + timedelta(hours=1)
    with pytest.raises(AuthenticationFailed):
        one.merchants.authenticate(ob.token)
    for token in (first.token, second.token):
        assert one.merchants.authenticate(token).merchant_id == mid


def test_bad_admin_requests_are_refused_and_change_nothing(one):
    ob, other = onboard(one), onboard(one, "other")
    mid = ob.merchant.merchant_id
    before = (rows(one.db, MerchantApiToken), rows(one.db, MerchantNotifySecret))
    for grace in (timedelta(seconds=-1), timedelta(days=31), 3600):
        with pytest.raises(InvalidRequest):
            one.merchants.rotate_token(mid, grace=grace)
        with pytest.raises(InvalidRequest):
            one.merchants.rotate_notify_secret(mid, overlap=grace)
    with pytest.raises(UnknownMerchant):
        one.merchants.rotate_token("NOPE")
    with pytest.raises(UnknownMerchant):
        one.merchants.rotate_notify_secret("NOPE")
    with pytest.raises(UnknownMerchant):
        one.merchants.disable("NOPE")
    with pytest.raises(InvalidRequest):
        one.merchants.revoke_token(mid, "pwk_")
    with pytest.raises(TokenNotFound):  # another merchant's token is not this merchant's
        one.merchants.revoke_token(mid, other.token[:10])
    assert (rows(one.db, MerchantApiToken), rows(one.db, MerchantNotifySecret)) == before
    assert one.merchants.authenticate(other.token).merchant_id == other.merchant.merchant_id
    one.merchants.revoke_token(mid, ob.token[:10])
    with pytest.raises(TokenNotFound):  # already revoked
        one.merchants.revoke_token(mid, ob.token[:10])


def test_tokens_and_secrets_never_reach_logs_or_reprs(one, caplog):
    caplog.set_level(logging.DEBUG)
    ob = onboard(one)
    mid = ob.merchant.merchant_id
    issued = one.merchants.rotate_token(mid)
    fresh = one.merchants.rotate_notify_secret(mid)
    one.merchants.revoke_token(mid, ob.token[:10])
    one.merchants.disable(mid)
    text = caplog.text + repr(ob) + repr(issued) + repr(fresh)
    text += repr(one.merchants.tokens(mid)) + repr(one.merchants.notify_secrets(mid))
    for secret in (ob.token, ob.notify_secret, issued.token, fresh.secret):
        assert secret not in text
    assert issued.prefix in caplog.text  # the log names the token by its prefix
    with one.db.session() as s:  # the token is stored as its hash only
        stored = s.execute(sa.select(MerchantApiToken.token_hash)).scalars().all()
    assert ob.token not in stored and issued.token not in stored


def test_tokens_of_merchants_onboarded_before_the_migration_keep_working(empty_db_url):
    """A merchant row written at revision 0005 (token in ``merchants.token_hash`` only)
    authenticates after the upgrade, and has no notification secret of its own."""
    from alembic import command

    from paycore.merchants import hash_token
    from runtime.migrate import alembic_config, upgrade_database

    db = Database(empty_db_url)
    with db.engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
    token = "pwk_" + "x" * 43
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO merchants (merchant_id, name, token_hash, token_prefix, status, "
                "fee_bps, created_at) VALUES ('OLD1', 'old shop', :h, :p, 'active', 0, :at)"
            ),
            {"h": hash_token(token), "p": token[:10], "at": T0},
        )
        conn.execute(sa.text("INSERT INTO merchant_products VALUES ('OLD1', 'goods', 'physical')"))
        conn.execute(sa.text("INSERT INTO merchant_pay_orgs VALUES ('OLD1', 'SANDBOX_A')"))
    upgrade_database(db.engine)
    core = PayCore(db, clock=Clock(T0))
    try:
        assert core.merchants.authenticate(token).merchant_id == "OLD1"
        assert core.merchants.notify_secrets("OLD1") == []
        issued = core.merchants.rotate_token("OLD1", grace=timedelta(0))
        with pytest.raises(AuthenticationFailed):
            core.merchants.authenticate(token)
        assert core.merchants.authenticate(issued.token).merchant_id == "OLD1"
    finally:
        core.close()


# -- the command line ----------------------------------------------------------------------
def test_cli_rotates_revokes_and_disables_with_audit_rows(
    sqlite_url, tmp_path, monkeypatch, capsys, caplog
):
    from console.audit import recent
    from runtime.cli import main

    monkeypatch.setenv("PAYWATCH_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    caplog.set_level(logging.DEBUG)
    core = PayCore(Database(sqlite_url))
    core.merchants.cache_ttl = 0  # a replica that reads every change at once
    ob = onboard(core)
    mid = ob.merchant.merchant_id

    def run(*argv: str) -> tuple[int, dict[str, str], str]:
        code = main(["merchant", *argv])
        out = capsys.readouterr()
        printed = dict(line.split(": ", 1) for line in out.out.splitlines() if ": " in line)
        return code, {k: v.strip() for k, v in printed.items()}, out.err

    code, printed, err = run("rotate-token", mid, "--grace", "30m", "--actor", "ann")
    new_token = printed["token"]
    assert code == 0 and new_token.startswith("pwk_") and "shown once" in err
    assert core.merchants.authenticate(ob.token).merchant_id == mid  # in its grace
    assert core.merchants.authenticate(new_token).merchant_id == mid
    assert run("revoke-token", mid, ob.token[:10], "--actor", "ann")[0] == 0
    with pytest.raises(AuthenticationFailed):
        core.merchants.authenticate(ob.token)
    code, printed, _ = run("rotate-notify-secret", mid, "--overlap", "0", "--actor", "ann")
    assert code == 0 and printed["notify_secret"].startswith("whsec_")
    assert run("disable", mid, "--actor", "ann")[0] == 0
    with pytest.raises(MerchantDisabled):
        core.merchants.authenticate(new_token)
    assert run("enable", mid, "--actor", "ann")[0] == 0
    assert core.merchants.authenticate(new_token).status == "active"
    code, _, _ = run("show", mid)
    assert code == 0
    assert run("revoke-token", "NOPE", "pwk_abcdef", "--actor", "ann")[0] == 2
    with pytest.raises(SystemExit):
        main(["merchant", "rotate-token", mid, "--grace", "soon"])
    shown = capsys.readouterr()

    audit = recent(core.db.engine)
    assert [r["action"] for r in reversed(audit)] == [
        "merchant.token.rotate",
        "merchant.token.revoke",
        "merchant.notify_secret.rotate",
        "merchant.disable",
        "merchant.enable",
        "merchant.token.revoke",
    ]
    assert all(r["actor"] == "ann" and r["role"] == "cli" for r in audit)
    assert audit[-1]["target"] == f"merchant:{mid}" and audit[-1]["detail"]["grace_s"] == 1800
    assert audit[-1]["detail"]["new_prefix"] == new_token[:10]
    assert audit[0]["detail"] == {"prefix": "pwk_abcdef", "ok": False, "error": "unknown_merchant"}
    everything = caplog.text + json.dumps([r["detail"] for r in audit]) + shown.out + shown.err
    for secret in (ob.token, new_token, printed["notify_secret"]):
        assert secret not in everything
    core.close()
