"""Console tables: local users, their sessions, login throttling and the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from collectors.dbtypes import NAMING, AutoId, UTCDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


metadata = Base.metadata


class ConsoleUser(Base):
    """A local console user; the password is stored as ``scrypt$n$r$p$salt$hash``."""

    __tablename__ = "console_users"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: set while the user is disabled: no sign-in, and open sessions end at the next click
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ConsoleSession(Base):
    """A signed-in browser: the SHA-256 of the random token its cookie holds (the token
    itself is never stored). Deleted on logout, expiry, and when an admin disables or
    removes the user or resets the password."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_username", "username"),)
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: a local user's name, or the e-mail of a single sign-on (OIDC) user
    username: Mapped[str] = mapped_column(String(320))
    source: Mapped[str] = mapped_column(String(8))  # "local" | "oidc"
    client: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsoleLoginThrottle(Base):
    """Failed sign-ins per key (``user:<name>`` or ``client:<address>``): the next attempt
    is answered no earlier than ``next_at``. ``version`` makes updates compare-and-set,
    so concurrent attempts from any number of sessions or processes take turns."""

    __tablename__ = "console_login_throttle"
    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)


class ConsoleAudit(Base):
    """Every console action: who (and with which role) did what to which target."""

    __tablename__ = "console_audit"
    __table_args__ = (Index("ix_console_audit_at", "at"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    at: Mapped[datetime] = mapped_column(UTCDateTime())
