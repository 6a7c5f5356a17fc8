"""Money is integer minor units plus an ISO currency; never floats."""

from __future__ import annotations

from typing import Any

from .errors import InvalidAmount, UnknownCurrency

#: currency -> minor-unit exponent (ISO 4217)
CURRENCIES: dict[str, int] = {
    "CNY": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "SGD": 2,
    "JPY": 0,
    "KRW": 0,
}
#: The largest single amount accepted, in minor units (10^12: ten billion at 2 decimals).
MAX_AMOUNT = 1_000_000_000_000
#: The smallest amount a merchant may ask for (one minor unit).
MIN_AMOUNT = 1
#: the shape of a currency code (ISO 4217: three capital letters); known ones: CURRENCIES
CURRENCY_PATTERN = "^[A-Z]{3}$"


def check_currency(currency: Any) -> str:
    """Return the currency code if known, else raise :class:`UnknownCurrency`."""
    if not isinstance(currency, str) or currency not in CURRENCIES:
        raise UnknownCurrency("unknown currency", currency=str(currency)[:8])
    return currency


def check_amount(amount: Any, *, field: str = "amount") -> int:
    """Validate a positive integer amount in minor units.

    Rejects bools, floats, strings, zero, negatives and anything above :data:`MAX_AMOUNT`.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(f"{field} must be an integer number of minor units", field=field)
    if amount < MIN_AMOUNT:
        raise InvalidAmount(f"{field} must be positive", field=field)
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"{field} exceeds the maximum of {MAX_AMOUNT}", field=field)
    return amount


def fee_for(amount: int, fee_bps: int) -> int:
    """Fee in minor units for ``amount`` at ``fee_bps`` basis points, rounded down."""
    return amount * fee_bps // 10_000
