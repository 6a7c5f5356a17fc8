"""The storage package's own exceptions (database errors leave it as
:class:`paycore.errors.StorageError`).

::

    RuntimeError
    └── ShadowSetupError: the shadow tables cannot be placed

Not a :class:`~paycore.errors.PayCoreError`: a setup failure is no API answer;
:class:`paycore.shadow.LazyShadow` reports it as ``shadow_unavailable`` (503).
"""

from __future__ import annotations

__all__ = ["ShadowSetupError"]


class ShadowSetupError(RuntimeError):
    """The shadow tables cannot be placed (in-memory database, a foreign schema...)."""
