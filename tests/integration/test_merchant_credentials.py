"""Merchant credentials on real databases: token rotation with grace, revocation,
disabling, per-merchant notification secrets with a rotation overlap, the migration of
existing merchants, and the `paywatch merchant ...` commands with their audit rows.

Propagation is tested with two :class:`PayCore` instances over one PostgreSQL schema
(two API replicas); clocks are set by the test.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import Clock, LiveServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from paycore import CreateTrade, Database, PayCore
from paycore.channels.signing import verify_headers
from paycore.db.schema import Merchant, MerchantApiToken, MerchantNotifySecret, Trade
from paycore.errors import (
    AuthenticationFailed,
    InvalidRequest,
    MerchantDisabled,
    TokenNotFound,
    UnknownMerchant,
)
from paycore.merchants import SHARED_KEY_ID
from paycore.notify import NotificationDelivery, add_notification, verify_notification

T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
SHARED = "the-platforms-shared-notify-key"
PRODUCTS = [("goods", "physical")]
ORGS = ["SANDBOX_A"]


@pytest.fixture
def replicas(pg_url):
    """Two pay cores (API replicas) over one PostgreSQL schema, one settable clock, and a
    short merchant cache (0.3 s) so propagation is observable quickly."""
    clock = Clock(T0)
    cores = [PayCore(Database(pg_url), clock=clock) for _ in range(2)]
    for c in cores:
        c.merchants.cache_ttl = 0.3
    yield cores[0], cores[1], clock
    for c in cores:
        c.close()


@pytest.fixture
def one(migrated_db):
    """One pay core on SQLite and on PostgreSQL, with a settable clock."""
    core = PayCore(migrated_db, clock=Clock(T0))
    yield core
    core.lock.close()


def onboard(core, name: str = "shop", url: str | None = None):
    return core.merchants.onboard(name, products=PRODUCTS, pay_orgs=ORGS, notify_url=url)


def trade(core, mid: str, no: str):
    return core.trades.create(
        mid,
        CreateTrade(
            out_trade_no=no,
            trade_type="instant",
            amount=100,
            currency="CNY",
            user_id="u1",
            order_type="goods",
            sub_type="physical",
            pay_org_no="SANDBOX_A",
        ),
    )


def rows(db, table) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


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
    assert api.merchants.authenticate(ob.token).merchant_id == mid
    assert api.merchants.cached_authentication(ob.token) is not None
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


# -- notification secrets ------------------------------------------------------------------
class Hooks:
    """Merchant endpoints: every POST kept with its headers, per path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        self.app = Starlette(routes=[Route("/{who}", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        with self.lock:
            self.got.setdefault(request.path_params["who"], []).append(
                (dict(request.headers), body)
            )
        return PlainTextResponse("ok")

    def last(self, who: str) -> tuple[dict[str, str], bytes]:
        return self.got[who][-1]


@pytest.fixture
def hooks():
    h = Hooks()
    with LiveServer(h.app) as server:
        h.url = server.url
        yield h


def notify(core, mid: str, url: str, n: int) -> None:
    core.db.run(
        lambda s: add_notification(
            s,
            core,
            merchant_id=mid,
            event_type="trade.paid",
            trade_id=None,
            payload={"n": n},
            url=url,
        )
    )


def send(core, at: datetime) -> None:
    delivery = NotificationDelivery(core.db, secret=SHARED, clock=core.clock)
    try:
        assert delivery.deliver_due(at) >= 1
    finally:
        delivery.close()


def signatures(headers: dict[str, str]) -> list[str]:
    return headers["x-paywatch-signature"].split(",")


def test_each_merchant_signs_with_its_own_secret(one, hooks):
    a, b = onboard(one, "a", f"{hooks.url}/a"), onboard(one, "b", f"{hooks.url}/b")
    assert a.notify_secret != b.notify_secret and a.notify_secret.startswith("whsec_")
    for n, ob in enumerate((a, b)):
        notify(one, ob.merchant.merchant_id, ob.merchant.notify_url, n)
    send(one, T0)
    for who, own, other in (("a", a, b), ("b", b, a)):
        headers, body = hooks.last(who)
        assert len(signatures(headers)) == 1
        assert verify_notification(own.notify_secret, headers, body)
        assert verify_headers(own.notify_secret, headers, body)  # one value: the old helper too
        assert not verify_notification(other.notify_secret, headers, body)
        assert not verify_notification(SHARED, headers, body)


def test_a_rotation_signs_with_both_secrets_during_the_overlap_only(one, hooks):
    ob = onboard(one, "a", f"{hooks.url}/a")
    mid = ob.merchant.merchant_id
    fresh = one.merchants.rotate_notify_secret(mid, overlap=timedelta(hours=6))
    assert fresh.old_valid_until == T0 + timedelta(hours=6) and fresh.secret not in repr(fresh)
    notify(one, mid, ob.merchant.notify_url, 1)
    send(one, T0 + timedelta(hours=6) - timedelta(seconds=1))
    headers, body = hooks.last("a")
    assert len(signatures(headers)) == 2  # the new secret's first
    assert verify_notification(fresh.secret, headers, body)
    assert verify_notification(ob.notify_secret, headers, body)  # the merchant may switch later
    assert not verify_notification(SHARED, headers, body)

    notify(one, mid, ob.merchant.notify_url, 2)
    send(one, T0 + timedelta(hours=6))  # the overlap is over
    headers, body = hooks.last("a")
    assert len(signatures(headers)) == 1
    assert verify_notification(fresh.secret, headers, body)
    assert not verify_notification(ob.notify_secret, headers, body)
    states = [
        (n.prefix, n.state(T0 + timedelta(hours=6))) for n in one.merchants.notify_secrets(mid)
    ]
    assert states == [(fresh.prefix, "active"), (ob.notify_secret[:12], "expired")]

    one.clock.now = T0 + timedelta(hours=7)  # the next rotation drops the spent secret
    again = one.merchants.rotate_notify_secret(mid, overlap=timedelta(0))
    assert [n.prefix for n in one.merchants.notify_secrets(mid)] == [again.prefix, fresh.prefix]
    notify(one, mid, ob.merchant.notify_url, 3)
    send(one, one.clock.now)  # no overlap: the new secret alone, at once
    headers, body = hooks.last("a")
    assert len(signatures(headers)) == 1 and verify_notification(again.secret, headers, body)
    assert not verify_notification(fresh.secret, headers, body)


def test_a_merchant_without_a_secret_moves_off_the_shared_key_by_rotating(one, hooks):
    """Merchants onboarded before per-merchant secrets are signed with the shared key; the
    first rotation signs with the shared key and the new secret for the overlap."""
    ob = onboard(one, "legacy", f"{hooks.url}/old")
    mid = ob.merchant.merchant_id
    with one.db.engine.begin() as conn:  # as migrated from revision 0005: no secret
        conn.execute(sa.delete(MerchantNotifySecret).where(MerchantNotifySecret.merchant_id == mid))
    notify(one, mid, ob.merchant.notify_url, 1)
    send(one, T0)
    headers, body = hooks.last("old")
    assert len(signatures(headers)) == 1 and verify_notification(SHARED, headers, body)

    fresh = one.merchants.rotate_notify_secret(mid, overlap=timedelta(hours=1))
    assert [n.prefix for n in one.merchants.notify_secrets(mid)] == [fresh.prefix, SHARED_KEY_ID]
    notify(one, mid, ob.merchant.notify_url, 2)
    send(one, T0 + timedelta(minutes=59))
    headers, body = hooks.last("old")
    assert verify_notification(SHARED, headers, body)
    assert verify_notification(fresh.secret, headers, body)
    notify(one, mid, ob.merchant.notify_url, 3)
    send(one, T0 + timedelta(hours=1))
    headers, body = hooks.last("old")
    assert verify_notification(fresh.secret, headers, body)
    assert not verify_notification(SHARED, headers, body)  # off the shared key for good
    assert json.loads(body)["data"] == {"n": 3}


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
