"""``paywatch simulate`` (being built)."""

from __future__ import annotations

import argparse


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` arguments and handler to ``p``."""

    def run(_: argparse.Namespace) -> int:
        raise SystemExit("paywatch simulate: not built yet")

    p.set_defaults(func=run)
