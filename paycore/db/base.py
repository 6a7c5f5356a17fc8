"""The pay core's declarative base: one :class:`Base` and one ``metadata`` for every
pay table (Alembic and the shadow copies read this object), and the column types the
tables share (``Money``: ``BigInteger`` minor units; ``Ts``: an aware UTC timestamp)."""

from __future__ import annotations

from sqlalchemy import BigInteger, MetaData
from sqlalchemy.orm import DeclarativeBase

from collectors.dbtypes import NAMING, UTCDateTime


class Base(DeclarativeBase):
    """The base of every pay table: one registry, one ``metadata`` with our naming."""

    metadata = MetaData(naming_convention=NAMING)


metadata = Base.metadata
Money = BigInteger
Ts = UTCDateTime()
