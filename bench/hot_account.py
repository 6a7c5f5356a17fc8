"""Hot-account bench: postings/s of concurrent writers crediting one account vs. many.

Runs four scenarios at two levels against PostgreSQL, in one fresh, throw-away schema, and
prints one JSON object as the last line of stdout (also in ``bench/results/hot_account.json``):

* ``cold``: every writer credits its own account (the reference);
* ``row_lock``: all credit one account the naive way (``SELECT … FOR UPDATE``);
* ``sub_accounts``: one account spread over N sub-accounts (``Ledger.post``);
* ``buffered``: one buffered account, summary posting every ~200 ms.

Database level (the headline keys ``<scenario>_per_s``): pgbench sends the SQL one posting
issues (``bench/sql/hot_<scenario>.sql``) from 16 clients, so the database is the
bottleneck. App level (``app_<scenario>_per_s``): 16 Python threads call ``Ledger.post``;
on a small machine the Python client is the bottleneck there.

Usage: ``python bench/hot_account.py [--seconds 10] [--app-seconds 3] [--writers 16]``; the
database comes from ``PAYWATCH_BENCH_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from _pg import check_trial, drain_and_check, log, run_database, summarizing  # bench/_pg.py
from sqlalchemy.orm import Session

from paycore.context import BizContext
from paycore.db.engine import Database, create_engine_from_url
from paycore.db.schema import Account, JournalEntry, JournalLeg
from paycore.ids import IdGenerator
from paycore.ledger.accounts import AccountRef, HotPolicy
from paycore.ledger.journal import Ledger, apply_delta, credit, debit
from paycore.ledger.subjects import MERCHANT_PAYABLE, PLATFORM_TRANSIT
from runtime.migrate import upgrade_database

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).resolve().parent / "results" / "hot_account.json"
CTX = BizContext("bench", "bench", "bench", "bench")
CNY, AMOUNT = "CNY", 100
Post = Callable[[Session, int, str], None]  # (session, writer index, biz_key)


def now() -> datetime:
    return datetime.now(UTC)


def payer(i: int) -> AccountRef:
    """The per-writer cold debit side (merchant payable may go negative)."""
    return AccountRef("merchant", f"bench-w{i}", MERCHANT_PAYABLE, CNY)


def transit(owner_id: str) -> AccountRef:
    return AccountRef("platform", owner_id, PLATFORM_TRANSIT, CNY)


def ledger_poster(ledger: Ledger, target: Callable[[int], AccountRef]) -> Post:
    def post(s: Session, i: int, key: str) -> None:
        ledger.post(
            s,
            biz_type="bench",
            biz_key=key,
            ctx=CTX,
            currency=CNY,
            legs=[debit(payer(i), AMOUNT), credit(target(i), AMOUNT)],
        )

    return post


def row_lock_poster(db: Database, ids: IdGenerator, writers: int) -> Post:
    """The naive path: lock the hot row, write entry + legs, read-modify-write the balance."""
    ledger = Ledger(ids, now, HotPolicy(rules={}))
    hot = transit("hot-rowlock")
    with db.session() as s:
        hot_id = ledger.accounts.resolve(s, hot, now()).id
        payer_ids = [ledger.accounts.resolve(s, payer(i), now()).id for i in range(writers)]

    def post(s: Session, i: int, key: str) -> None:
        # Lock first: FOR UPDATE taken after the legs' FK checks (FOR KEY SHARE on the
        # same row, held by every writer) deadlocks the writers against each other.
        balance = s.execute(
            sa.select(Account.balance).where(Account.id == hot_id).with_for_update()
        ).scalar_one()
        entry_id = ids.next_id()
        s.execute(
            sa.insert(JournalEntry).values(
                id=entry_id,
                biz_type="bench",
                biz_key=key,
                currency=CNY,
                merchant_id="bench",
                order_type="bench",
                sub_type="bench",
                pay_org_no="bench",
                memo="",
                created_at=now(),
            )
        )
        s.execute(
            sa.insert(JournalLeg),
            [
                {
                    "id": ids.next_id(),
                    "entry_id": entry_id,
                    "account_id": payer_ids[i],
                    "amount": AMOUNT,
                    "currency": CNY,
                },
                {
                    "id": ids.next_id(),
                    "entry_id": entry_id,
                    "account_id": hot_id,
                    "amount": -AMOUNT,
                    "currency": CNY,
                },
            ],
        )
        apply_delta(s, payer_ids[i], AMOUNT * MERCHANT_PAYABLE.sign)
        s.execute(
            sa.update(Account)
            .where(Account.id == hot_id)
            .values(balance=balance - AMOUNT * PLATFORM_TRANSIT.sign)
        )

    return post


def posting(post: Post, i: int, key: str) -> Callable[[Session], None]:
    return lambda s: post(s, i, key)


def measure(
    db: Database, name: str, post: Post, writers: int, seconds: float, warmup: float
) -> float:
    """Run ``writers`` threads posting in a loop; count commits inside the timed window."""
    for i in range(writers):  # pre-create / cache every account before timing
        db.run(posting(post, i, f"{name}-pre-{i}"))
    counts = [0] * writers
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers + 1)
    start = end = 0.0

    def writer(i: int) -> None:
        n = 0
        barrier.wait()
        try:
            while time.perf_counter() < end:
                n += 1
                db.run(posting(post, i, f"{name}-{i}-{n}"))
                if start <= time.perf_counter() < end:  # committed inside the window
                    counts[i] += 1
        except BaseException as e:  # surfaced after join
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(writers)]
    for t in threads:
        t.start()
    start = time.perf_counter() + warmup
    end = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} writer(s) failed") from errors[0]
    return sum(counts) / seconds


def run_app(
    db: Database, ids: IdGenerator, writers: int, seconds: float, warmup: float, subs: int
) -> dict[str, float]:
    """App level: Python writer threads posting through ``Ledger.post``."""
    out: dict[str, float] = {}
    code = PLATFORM_TRANSIT.code

    cold = Ledger(ids, now, HotPolicy(rules={}))
    out["cold"] = measure(
        db, "cold", ledger_poster(cold, lambda i: transit(f"cold-{i}")), writers, seconds, warmup
    )
    log(f"app cold: {out['cold']:.1f}/s")
    check_trial(db, "app cold")

    naive = row_lock_poster(db, ids, writers)
    out["row_lock"] = measure(db, "rowlock", naive, writers, seconds, warmup)
    log(f"app row_lock: {out['row_lock']:.1f}/s")
    check_trial(db, "app row_lock")

    sub = Ledger(ids, now, HotPolicy(rules={("platform", "*", code): ("sub_accounts", subs)}))
    out["sub_accounts"] = measure(
        db, "sub", ledger_poster(sub, lambda i: transit("hot-sub")), writers, seconds, warmup
    )
    log(f"app sub_accounts({subs}): {out['sub_accounts']:.1f}/s")
    check_trial(db, "app sub_accounts")

    buf = Ledger(ids, now, HotPolicy(rules={("platform", "*", code): ("buffered", 0)}))
    with summarizing(db, ids) as folded:
        out["buffered"] = measure(
            db, "buf", ledger_poster(buf, lambda i: transit("hot-buf")), writers, seconds, warmup
        )
    log(f"app buffered: {out['buffered']:.1f}/s (summarizer folded {folded[0]} during run)")
    drain_and_check(db, ids, "app buffered")
    return out


def summary(
    rates: dict[str, float], app: dict[str, float], args: argparse.Namespace
) -> dict[str, object]:
    """The JSON result: database-level rates as the headline keys, app level beside them."""
    r1 = {k: round(v, 1) for k, v in rates.items()}
    a1 = {k: round(v, 1) for k, v in app.items()}
    return {
        "level": f"database (pgbench, {args.writers} clients)",
        **{f"{k}_per_s": v for k, v in r1.items()},
        "row_lock_ratio": round(r1["row_lock"] / r1["cold"], 3),
        "best_mitigated_ratio": round(max(r1["sub_accounts"], r1["buffered"]) / r1["cold"], 3),
        **{f"app_{k}_per_s": v for k, v in a1.items()},
        "app_best_mitigated_ratio": round(max(a1["sub_accounts"], a1["buffered"]) / a1["cold"], 3),
        "writers": args.writers,
        "seconds": args.seconds,
        "app_seconds": args.app_seconds,
        "subs": args.subs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=10, help="pgbench -T per scenario")
    p.add_argument("--app-seconds", type=float, default=3.0, help="app-level window per scenario")
    p.add_argument("--writers", type=int, default=16, help="pgbench clients and writer threads")
    p.add_argument("--warmup", type=float, default=1.0, help="untimed seconds before app windows")
    p.add_argument("--subs", type=int, default=32, help="sub-accounts of the hot account")
    args = p.parse_args(argv)

    url = os.environ.get("PAYWATCH_BENCH_DATABASE_URL", DEFAULT_URL)
    schema = f"bench_hot_{secrets.token_hex(4)}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    log(f"schema {schema}")
    sep = "&" if "?" in url else "?"
    engine = create_engine_from_url(
        f"{url}{sep}options=-csearch_path%3D{schema}", pool_size=args.writers + 4, max_overflow=8
    )
    try:
        upgrade_database(engine)
        db, ids = Database(engine), IdGenerator()
        app = run_app(db, ids, args.writers, args.app_seconds, args.warmup, args.subs)
        rates = run_database(
            db,
            ids,
            url,
            schema,
            clients=args.writers,
            seconds=args.seconds,
            subs=args.subs,
            amount=AMOUNT,
        )
        check_trial(db, "whole schema")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()
        log(f"dropped schema {schema}")
    result = summary(rates, app, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
