"""Shared by the shadow-traffic tests: a platform with a merchant, request bodies, and the
real database's state to compare against (not collected: no ``test_`` prefix)."""

from __future__ import annotations

import sqlalchemy as sa

from paycore.db.schema import Account

ORGS = ("SANDBOX_A", "SANDBOX_B")
SHADOW = {"X-Paywatch-Shadow": "1"}
NOTIFY = "http://127.0.0.1:9/hook"  # nothing listens: nobody may try to deliver to it


def real_state(db) -> tuple[dict[str, int], dict[int, int]]:
    """Row counts of every table of the real database, and every account balance."""
    with db.engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        counts = {
            n: conn.execute(sa.select(sa.func.count()).select_from(sa.table(n))).scalar_one()
            for n in names
            if n != "alembic_version"
        }
        balances = dict(conn.execute(sa.select(Account.id, Account.balance)).all())
    assert "trades" in counts
    return counts, balances


def metric_total(registry, name: str, **labels: str) -> float:
    return sum(
        s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def drop_shadow_of(db_url: str) -> None:
    from paycore import Database
    from paycore.db.shadow import drop_shadow

    db = Database(db_url)
    try:
        drop_shadow(db.engine)
    finally:
        db.dispose()


def body(no: str, amount: int = 10_000, **kw) -> dict:
    return {
        "out_trade_no": no,
        "trade_type": "instant",
        "amount": amount,
        "currency": "CNY",
        "user_id": "u1",
        "order_type": "goods",
        "sub_type": "physical",
        "pay_org_no": "SANDBOX_A",
        **kw,
    }


def platform_for(
    db_url: str,
    tmp_path,
    *,
    channels: bool,
    api_url: str = "http://127.0.0.1:9",
    sandbox_url: str = "http://127.0.0.1:9",
    **settings_kw,
):
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings

    settings_kw.setdefault("channel_secrets", {o: f"secret-{o}" for o in ORGS})
    settings = Settings(
        database_url=db_url,
        api_url=api_url,
        sandbox_url=sandbox_url,
        pay_orgs=ORGS,
        var_dir=str(tmp_path),
        **settings_kw,
    )
    platform = build_platform(settings, channels=channels)
    ob = platform.paycore.merchants.onboard(
        "shadow shop",
        products=[("goods", "physical")],
        pay_orgs=list(ORGS),
        fee_bps=100,
        notify_url=NOTIFY,
    )
    return platform, ob.merchant.merchant_id, ob.token
