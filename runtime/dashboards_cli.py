"""``paywatch dashboards export``: the Grafana dashboards (JSON) and their provisioning
files, generated from the SLO spec and the metric names; the shipped copy is
``deploy/grafana`` (a test fails when it is stale)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SHIPPED_GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana"


def export_files(spec_path: str | None = None) -> dict[str, str]:
    """Relative path (under the output directory) -> text of every generated file."""
    from alerts.dashboards import dashboard_files, provisioning_files
    from alerts.slo_spec import load_spec

    return {**dashboard_files(load_spec(spec_path)), **provisioning_files()}


def _export(args: argparse.Namespace) -> int:
    from alerts.errors import RuleError

    try:
        files = export_files(args.spec)
    except RuleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or "deploy/grafana")
    for rel, text in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0


def configure_parser(p: argparse.ArgumentParser) -> None:
    """``dashboards export [--out DIR] [--spec PATH]``."""
    sub = p.add_subparsers(dest="dashboards_command", required=True)
    export = sub.add_parser("export", help="write the Grafana dashboards and provisioning files")
    export.add_argument("--out", help="directory to write into (default: ./deploy/grafana)")
    export.add_argument(
        "--spec",
        help="SLO spec file (default: $PAYWATCH_SLO_SPEC, else the shipped one: alerts/slo/)",
    )
    export.set_defaults(func=_export)
