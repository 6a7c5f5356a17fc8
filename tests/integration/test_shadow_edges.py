"""Shadow traffic at its edges: invalid markers, isolation from real orders and tokens,
the shadow tables' structure and constraints, the off switch, settings, and rebuilds."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from shadow_world import SHADOW, body, drop_shadow_of, platform_for, real_state

from paycore.channels.signing import signed_headers
from paycore.db.schema import metadata


@pytest.fixture
def plain(db_url, tmp_path):
    """Platform without channel front, API through TestClient."""
    yield from _plain(db_url, tmp_path)


@pytest.fixture
def plain_pg(pg_url, tmp_path):
    yield from _plain(pg_url, tmp_path)


def _plain(url, tmp_path):
    platform, mid, token = platform_for(url, tmp_path, channels=False)
    client = TestClient(platform.api_app(), headers={"Authorization": f"Bearer {token}"})
    with client:
        yield platform, mid, client
    platform.close()
    drop_shadow_of(url)


@pytest.mark.parametrize("value", ["yes", "true", "2", "", "1, 0"])
def test_an_invalid_shadow_header_is_refused_with_400_and_writes_nothing(plain, value):
    platform, _, client = plain
    before = real_state(platform.paycore.db)
    r = client.post("/v1/trades", json=body("bad-1"), headers={"X-Paywatch-Shadow": value})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_shadow_header" and "X-Paywatch-Shadow" in err["message"]
    assert real_state(platform.paycore.db) == before
    assert platform.shadow.built is None  # a refused request does not even build the shadow


def test_conflicting_shadow_markers_are_refused(plain):
    _, _, client = plain
    r = client.get("/v1/trades/x", headers=[("X-Paywatch-Shadow", "1"), ("X-Paywatch-Shadow", "0")])
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_shadow_header"


def test_shadow_cannot_read_or_settle_real_orders_and_authenticates_for_real(plain):
    platform, _, client = plain
    assert client.post("/v1/trades", json=body("real-1")).status_code == 200
    po = client.post(
        "/v1/trades/real-1/pay", json={"tools": [{"tool": "channel", "amount": 10_000}]}
    ).json()
    item = po["items"][0]
    assert item["status"] == "processing"

    r = client.get("/v1/trades/real-1", headers=SHADOW)
    assert r.status_code == 404 and r.json()["error"]["code"] == "trade_not_found"
    r = client.get("/v1/trades/real-1", headers={**SHADOW, "Authorization": "Bearer pwk_nope"})
    assert r.status_code == 401  # shadow traffic authenticates against the real merchants

    def callback(query: str):
        raw = json.dumps(
            {
                "pay_org_no": "SANDBOX_A",
                "channel_txn_no": item["channel_txn_no"],
                "status": "success",
                "amount": 10_000,
                "currency": "CNY",
            }
        ).encode()
        headers = signed_headers("secret-SANDBOX_A", raw) | {"content-type": "application/json"}
        return client.post(f"/v1/channels/SANDBOX_A/callback{query}", content=raw, headers=headers)

    assert callback("?shadow=1").status_code == 404  # a shadow result never settles real orders
    assert client.get("/v1/trades/real-1").json()["pay_orders"][0]["status"] == "processing"
    assert callback("").status_code == 200
    assert client.get("/v1/trades/real-1").json()["trade"]["status"] == "paid"
    assert callback("?shadow=maybe").status_code == 400


def test_shadow_tables_have_the_real_structure(plain):
    platform, _, client = plain
    assert client.post("/v1/trades", json=body("sh-1"), headers=SHADOW).status_code == 200
    shadow = platform.shadow.built
    real_i = sa.inspect(platform.paycore.db.engine)
    shadow_i = sa.inspect(shadow.storage.base)

    def shape(insp, table: str, schema: str | None) -> tuple:
        cols = [
            (c["name"], type(c["type"]).__name__, c["nullable"])
            for c in insp.get_columns(table, schema=schema)
        ]
        uniques = sorted(u["name"] for u in insp.get_unique_constraints(table, schema=schema))
        indexes = sorted(i["name"] for i in insp.get_indexes(table, schema=schema))
        fks = sorted(
            (f["referred_table"], tuple(f["constrained_columns"]))
            for f in insp.get_foreign_keys(table, schema=schema)
        )
        return cols, uniques, indexes, fks

    for table in metadata.tables:
        assert shape(shadow_i, table, shadow.storage.schema) == shape(real_i, table, None), table


def test_shadow_ledger_refuses_unbalanced_entries_on_postgresql(plain_pg):
    platform, mid, client = plain_pg
    assert platform.paycore.db.is_postgres  # the balanced-entry trigger is PostgreSQL's
    assert client.post("/v1/trades", json=body("sh-1"), headers=SHADOW).status_code == 200
    shadow = platform.shadow.built
    from datetime import UTC, datetime

    from paycore.db.schema import JournalEntry, JournalLeg
    from paycore.errors import PayCoreError
    from paycore.ledger import user_balance

    def unbalanced(s) -> None:
        acc = shadow.ledger.accounts.resolve(s, user_balance("M1", "u9", "CNY"), datetime.now(UTC))
        s.add(
            JournalEntry(
                id=1,
                biz_type="t",
                biz_key="k",
                currency="CNY",
                merchant_id=mid,
                order_type="goods",
                sub_type="physical",
                pay_org_no="SANDBOX_A",
                created_at=datetime.now(UTC),
            )
        )
        s.flush()
        s.add(JournalLeg(id=2, entry_id=1, account_id=acc.id, amount=5, currency="CNY"))

    with pytest.raises(PayCoreError) as caught:  # the deferred trigger refuses it at commit
        shadow.db.run(unbalanced)
    assert "unbalanced" in str(caught.value.__cause__)


def test_shadow_off_refuses_marked_requests_with_403(db_url, tmp_path):
    platform, _, token = platform_for(db_url, tmp_path, channels=False, shadow=False)
    try:
        with TestClient(platform.api_app(), headers={"Authorization": f"Bearer {token}"}) as c:
            r = c.post("/v1/trades", json=body("t1"), headers=SHADOW)
            assert r.status_code == 403 and r.json()["error"]["code"] == "shadow_disabled"
            r = c.post("/v1/trades", json=body("t1"), headers={"X-Paywatch-Shadow": "0"})
            assert r.status_code == 200  # 0 is real traffic
    finally:
        platform.close()


def test_shadow_settings_from_env():
    from runtime.settings import Settings

    assert Settings.from_env({}).shadow is True
    assert Settings.from_env({"PAYWATCH_SHADOW": "0"}).shadow is False
    assert Settings.from_env({"PAYWATCH_SHADOW": "on"}).shadow is True
    s = Settings.from_env({"PAYWATCH_SHADOW_CHANNEL_URL": "http://sandbox:8100"})
    assert s.shadow_channel_url == "http://sandbox:8100"
    with pytest.raises(ValueError, match="PAYWATCH_SHADOW"):
        Settings.from_env({"PAYWATCH_SHADOW": "maybe"})


def test_shadow_tables_are_kept_and_rebuilt_only_when_the_models_change(migrated_db, db_url):
    from paycore.db.schema import LedgerSubject, Merchant
    from paycore.db.shadow import ShadowSetupError, drop_shadow, open_shadow, shadow_schema_name

    def merchants(storage) -> int:
        with storage.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(Merchant)).scalar_one()

    def subjects(storage) -> int:
        with storage.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(LedgerSubject)).scalar_one()

    real = migrated_db.engine
    with real.connect() as conn:  # the chart of accounts the migrations seeded
        chart = conn.execute(sa.select(sa.func.count()).select_from(LedgerSubject)).scalar_one()
    assert chart >= 6
    storage = open_shadow(real)
    try:
        assert subjects(storage) == chart  # the chart of accounts, copied from the real tables
        with storage.engine.begin() as conn:
            conn.execute(
                sa.insert(Merchant).values(
                    merchant_id="M1",
                    name="n",
                    token_hash="h",
                    token_prefix="p",
                    status="active",
                    fee_bps=0,
                    created_at=sa.func.current_timestamp(),
                )
            )
        storage.dispose()
        storage = open_shadow(real)  # same models: the shadow data stays
        assert merchants(storage) == 1
        with storage.engine.begin() as conn:  # pretend the shadow tables are from older models
            if storage.sqlite_path is not None:
                conn.exec_driver_sql("PRAGMA shadow.user_version = 1")
            else:
                conn.exec_driver_sql(
                    f"COMMENT ON SCHEMA \"{storage.schema}\" IS 'paywatch shadow old'"
                )
        storage.dispose()
        storage = open_shadow(real)  # rebuilt from the current models: disposable data
        assert merchants(storage) == 0 and subjects(storage) == chart
    finally:
        storage.dispose()
        drop_shadow(real)
    if migrated_db.is_postgres:  # never adopts (or drops) a schema that is not a shadow one
        schema = shadow_schema_name(real)
        with real.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            conn.exec_driver_sql(f'CREATE TABLE "{schema}".precious (id int)')
        try:
            with pytest.raises(ShadowSetupError, match="not a shadow schema"):
                open_shadow(real)
            drop_shadow(real)
            with real.connect() as conn:
                assert (
                    conn.exec_driver_sql(f'SELECT count(*) FROM "{schema}".precious').scalar() == 0
                )
        finally:
            with real.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
