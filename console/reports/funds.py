"""The fund report: income, outgo and balances over a period, from the ledger only.

Everything is computed from ``journal_legs`` (signed amounts: debit positive, credit
negative) joined to ``journal_entries`` (the business context: merchant, order type,
sub type, pay org, and the posting time) and ``accounts`` → ``ledger_subjects`` (the
accounting subject and its normal side). Metrics are never read.

Definitions, per subject and currency (all amounts in minor units):

* ``debits`` / ``credits``: the sums of the subject's debit and credit legs posted in
  ``[start, end)`` (both non-negative);
* ``income``: movement on the subject's *normal* side in the period (credits for a
  credit-normal subject such as merchant payable 2002 or fee income 6001, debits for a
  debit-normal one such as channel clearing 1002): what flowed *into* the subject;
* ``outgo``: movement on the opposite side: what flowed *out* of it (e.g. refunds
  and withdrawals debited from merchant payable);
* ``net = income - outgo``;
* ``opening``: the subject's balance on its normal side from every leg posted before
  ``start``; ``closing = opening + net`` (the balance from every leg before ``end``).

Platform income is the net of the fee income subject 6001 (fees are charged on
completed pays and not returned on refunds). Balances come from the journal, not from
``accounts.balance``, because hot accounts apply their buffered postings later.

The same numbers are broken down by the four context columns of the journal entry
(``merchant_id, order_type, sub_type, pay_org_no``) and subject; summing the breakdown
rows of a subject over any dimension gives the subject row exactly.

People read amounts through :func:`format_money` (``213,575.66 CNY``: the currency's
exponent from :data:`paycore.money.CURRENCIES`, thousands separators, integer arithmetic
only); CSV exports keep the exact minor units.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select

from paycore import Database
from paycore.db.schema import Account, JournalEntry, JournalLeg, LedgerSubject
from paycore.ledger.subjects import FEE_INCOME
from paycore.money import CURRENCIES

DIMENSIONS = ("merchant_id", "order_type", "sub_type", "pay_org_no")


@dataclass(frozen=True, slots=True)
class SubjectRow:
    """One subject's movement and balances over the period, in one currency."""

    subject_code: str
    subject_name: str
    kind: str
    normal_side: str
    currency: str
    debits: int
    credits: int
    income: int
    outgo: int
    net: int
    opening: int
    closing: int


@dataclass(frozen=True, slots=True)
class DimensionRow:
    """A subject's movement for one business context (merchant, order type, sub type,
    pay org), in one currency."""

    merchant_id: str
    order_type: str
    sub_type: str
    pay_org_no: str
    subject_code: str
    subject_name: str
    currency: str
    debits: int
    credits: int
    income: int
    outgo: int
    net: int
    opening: int
    closing: int


@dataclass(frozen=True, slots=True)
class GroupRow:
    """Subject movement summed over one dimension's value (see :meth:`FundReport.by`)."""

    dimension: str
    value: str
    subject_code: str
    subject_name: str
    currency: str
    income: int
    outgo: int
    net: int
    opening: int
    closing: int


@dataclass(frozen=True, slots=True)
class Totals:
    """Whole-ledger figures per currency over the period."""

    currency: str
    debits: int  # equals credits: every entry balances
    credits: int
    platform_income: int  # net of fee income (6001)
    entries: int


@dataclass
class FundReport:
    start: datetime
    end: datetime
    subjects: list[SubjectRow] = field(default_factory=list)
    details: list[DimensionRow] = field(default_factory=list)
    totals: list[Totals] = field(default_factory=list)

    def by(self, dimension: str) -> list[GroupRow]:
        """The detail rows summed per (``dimension`` value, subject, currency)."""
        if dimension not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dimension!r}; one of {DIMENSIONS}")
        acc: dict[tuple[str, str, str], list[int]] = {}
        names: dict[str, str] = {}
        for r in self.details:
            key = (str(getattr(r, dimension)), r.subject_code, r.currency)
            names[r.subject_code] = r.subject_name
            sums = acc.setdefault(key, [0, 0, 0, 0, 0])
            for i, v in enumerate((r.income, r.outgo, r.net, r.opening, r.closing)):
                sums[i] += v
        return [
            GroupRow(dimension, value, code, names[code], cur, *sums)
            for (value, code, cur), sums in sorted(acc.items())
        ]

    def subject(self, code: str, currency: str = "CNY") -> SubjectRow | None:
        for r in self.subjects:
            if r.subject_code == code and r.currency == currency:
                return r
        return None

    def total(self, currency: str = "CNY") -> Totals | None:
        for t in self.totals:
            if t.currency == currency:
                return t
        return None


def fund_report(db: Database, start: datetime, end: datetime) -> FundReport:
    """Income, outgo and balances of ``[start, end)`` (aware UTC datetimes) by subject
    and by business context; see the module docstring for the definitions."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be aware UTC datetimes")
    if end <= start:
        raise ValueError("end must be after start")
    je, leg, acct, subj = JournalEntry, JournalLeg, Account, LedgerSubject
    at = je.created_at
    in_period = at >= start
    before = func.sum(case((at < start, leg.amount), else_=0)).label("before")
    debits = func.sum(case((in_period & (leg.amount > 0), leg.amount), else_=0)).label("debits")
    credits = func.sum(case((in_period & (leg.amount < 0), -leg.amount), else_=0)).label("credits")
    keys = (
        je.merchant_id,
        je.order_type,
        je.sub_type,
        je.pay_org_no,
        acct.subject_code,
        subj.name,
        subj.kind,
        subj.normal_side,
        leg.currency,
    )
    stmt = (
        select(*keys, before, debits, credits)
        .select_from(leg)
        .join(je, je.id == leg.entry_id)
        .join(acct, acct.id == leg.account_id)
        .join(subj, subj.code == acct.subject_code)
        .where(at < end)
        .group_by(*keys)
    )
    entries = select(je.currency, func.count()).where(at >= start, at < end).group_by(je.currency)
    with db.session() as s:
        rows = s.execute(stmt).all()
        counts = {str(c): int(n) for c, n in s.execute(entries).all()}
    report = FundReport(start, end)
    per_subject: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        sign = 1 if r.normal_side == "debit" else -1
        d, c, b = int(r.debits or 0), int(r.credits or 0), int(r.before or 0)
        income, outgo = (d, c) if sign == 1 else (c, d)
        opening = sign * b
        net = income - outgo
        report.details.append(
            DimensionRow(
                r.merchant_id,
                r.order_type,
                r.sub_type,
                r.pay_org_no,
                r.subject_code,
                r.name,
                r.currency,
                d,
                c,
                income,
                outgo,
                net,
                opening,
                opening + net,
            )
        )
        key = (r.subject_code, r.currency)
        agg = per_subject.setdefault(key, [r.name, r.kind, r.normal_side, 0, 0, 0, 0, 0])
        for i, v in enumerate((d, c, income, outgo, opening), start=3):
            agg[i] += v
    report.details.sort(
        key=lambda x: (
            x.currency,
            x.subject_code,
            x.merchant_id,
            x.order_type,
            x.sub_type,
            x.pay_org_no,
        )
    )
    for (code, cur), (name, kind, side, d, c, income, outgo, opening) in sorted(
        per_subject.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        net = income - outgo
        report.subjects.append(
            SubjectRow(
                code, name, kind, side, cur, d, c, income, outgo, net, opening, opening + net
            )
        )
    currencies = sorted({r.currency for r in report.subjects} | set(counts))
    for cur in currencies:
        rows_c = [r for r in report.subjects if r.currency == cur]
        fee = next((r.net for r in rows_c if r.subject_code == FEE_INCOME.code), 0)
        report.totals.append(
            Totals(
                cur,
                sum(r.debits for r in rows_c),
                sum(r.credits for r in rows_c),
                fee,
                counts.get(cur, 0),
            )
        )
    return report


#: amount fields of the report rows (minor units)
MONEY_FIELDS = frozenset(
    {"debits", "credits", "income", "outgo", "net", "opening", "closing", "platform_income"}
)


def format_money(minor: int, currency: str) -> str:
    """An amount in minor units as people read it: ``21357566, "CNY"`` ->
    ``"213,575.66 CNY"``; ``-500, "JPY"`` -> ``"-500 JPY"``. Exact for any integer (no
    floats). A currency without a known exponent shows its minor units as they are."""
    minor = int(minor)
    exp = CURRENCIES.get(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exp) if exp else (abs(minor), 0)
    text = f"{sign}{whole:,}"
    if exp:
        text += f".{frac:0{exp}d}"
    elif exp is None:
        text += " (minor units)"
    return f"{text} {currency}"


def major_units(minor: int, currency: str) -> float:
    """An amount in the currency's major unit, for chart axes only (never for sums)."""
    return int(minor) / 10 ** CURRENCIES.get(currency, 0)


def money_table(rows: Iterable[Any], *, drop: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Report rows as display dicts: every amount as :func:`format_money` text in the
    row's currency; other fields as they are (``drop`` leaves fields out)."""
    out = []
    for r in rows:
        d = asdict(r) if is_dataclass(r) and not isinstance(r, type) else dict(r)
        cur = str(d.get("currency", ""))
        out.append(
            {
                k: (format_money(v, cur) if k in MONEY_FIELDS else v)
                for k, v in d.items()
                if k not in drop
            }
        )
    return out


def has_movement(report: FundReport, currency: str | None = None) -> bool:
    """Whether any leg was posted in the period (in ``currency``, when given)."""
    return any(
        t.entries > 0 or t.debits > 0
        for t in report.totals
        if currency is None or t.currency == currency
    )


def to_csv(rows: Iterable[Any], columns: Sequence[str] | None = None) -> str:
    """Dataclass rows (or mappings) as CSV text with a header line.

    ``columns`` defaults to the first row's fields; with no rows and no columns the
    result is empty.
    """
    items = [asdict(r) if is_dataclass(r) and not isinstance(r, type) else dict(r) for r in rows]
    if columns is None:
        if not items:
            return ""
        columns = list(items[0])
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for item in items:
        writer.writerow(item)
    return out.getvalue()


def columns_of(row_type: type) -> list[str]:
    """The CSV header of a dataclass row type (for an empty export)."""
    return [f.name for f in fields(row_type)]
