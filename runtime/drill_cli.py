"""``paywatch drill``: drills that judge the platform, beside ``simulate --drill``.

``paywatch drill grade-audit`` starts the platform in this process (sandbox, API and
worker on threads, the database and Redis behind fault proxies), sends simulated merchant
traffic, faults every dependency of the dependency map in turn and reports each edge's
declared grade against what the links did (:mod:`simulator.grade_audit`). The report is
stored with the other drill reports (the Drills page shows it); a contradicted grade
raises the ``grade_contradicted`` alert.

Exit codes: 0 every judged grade confirmed (and no payment lost or doubled), 1 a grade
contradicted or a payment lost or doubled, 2 ``--only`` names no dependency of the map.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

EXIT_FAILED, EXIT_USAGE = 1, 2
FULL_SCALE_S = 60.0  #: seconds per fault at which the platform's jobs run at normal speed


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``drill`` subcommands to ``p``."""
    sub = p.add_subparsers(dest="drill_command", required=True)
    g = sub.add_parser(
        "grade-audit", help="fault every dependency in turn and judge every edge's grade"
    )
    a = g.add_argument
    a("--seconds-per-fault", type=float, default=FULL_SCALE_S, help="each fault's window")
    a("--rate", type=float, default=6.0, help="simulated payments per second")
    a("--only", action="append", default=[], help="fault only this dependency (repeatable)")
    a("--settle", type=float, default=60.0, help="seconds to wait for pending payments")
    a("--seed", type=int, help="fix the traffic shape")
    a("--receiver-port", type=int, default=0, help="merchant receivers (0: a free port)")
    a("--json", action="store_true", help="print the whole report as JSON")
    g.set_defaults(func=run_grade_audit_command)


def audit_jobs(platform: Any, factor: float) -> list[tuple[str, Callable[[], Any]]]:
    """The worker's jobs that call dependencies, guarded as the worker guards them
    (:func:`runtime.worker.worker_jobs`: each under its ``job.*`` caller), run once in
    every fault window: the active query (orders in flight for ``12 s x factor``), the hot
    accounts' summary posting, compensation, internal reconciliation and each pay org's
    statement reconciliation for yesterday."""
    from paycore.channels.guarded import GuardedGateway
    from paycore.jobs.active_query import ActiveQuery
    from paycore.jobs.ledger_jobs import summary_posting_job
    from paycore.recon import reconcile_internal
    from paycore.recon.external import reconcile_day

    from .worker import as_caller, build_worker

    core = platform.paycore
    gateway = platform.front.gateway if platform.front is not None else None
    if gateway is None:
        return []
    after = max(0.5, 12.0 * factor)  # the window's pays in flight are asked about in it
    asking = GuardedGateway(gateway, core.guard, "job.active_query")
    query = ActiveQuery(core, asking, first_after_s=after, interval_s=after)
    recon = GuardedGateway(gateway, core.guard, "job.reconciliation")
    day = (datetime.now(UTC) - timedelta(days=1)).date()

    def statement(org: str) -> Callable[[], Any]:
        return lambda: reconcile_day(core, recon, org, day)

    worker = build_worker(platform, worker_id="grade-audit")

    def compensation() -> None:
        worker.handlers.enqueue_open_exceptions()
        worker.run_once()

    jobs: list[tuple[str, Callable[[], Any]]] = [
        ("active_query", as_caller("job.active_query", query.run_once)),
        ("summary_posting", lambda: summary_posting_job(core)),
        ("compensation", as_caller("job.compensation", compensation)),
        (
            "recon_internal",
            as_caller("job.reconciliation", lambda: reconcile_internal(core, gateway=recon)),
        ),
    ]
    jobs += [
        (f"recon_external_{org}", as_caller("job.reconciliation", statement(org)))
        for org in platform.settings.pay_orgs
    ]
    return jobs


def run_grade_audit_command(args: argparse.Namespace) -> int:
    """The ``drill grade-audit`` command."""
    from simulator.grade_audit import AuditConfig, run_grade_audit
    from simulator.grade_audit_faults import audit_order
    from simulator.grade_audit_report import summary_lines

    from .drill_speed import fast_jobs
    from .embedded import EmbeddedOptions, EmbeddedPlatform
    from .settings import Settings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = AuditConfig(
        seconds_per_fault=args.seconds_per_fault, only=tuple(args.only), settle_s=args.settle
    )
    factor = min(1.0, args.seconds_per_fault / FULL_SCALE_S)
    settings = Settings.from_env()
    opts = EmbeddedOptions(
        jobs=fast_jobs(factor) if factor < 1 else None,
        sample_interval_s=1.0 if factor < 1 else None,
    )
    stack = EmbeddedPlatform(settings, opts).start()
    sim = None
    try:
        sim = audit_simulator(settings, stack, args.rate, args.seed, args.receiver_port)
        print(
            f"grade audit: {args.seconds_per_fault:g}s per fault at ~{args.rate:g} payments/s; "
            f"proxies: {', '.join(stack.proxies) or 'none'}"
        )
        assert stack.platform is not None
        guard = stack.platform.stability.guard
        try:
            audit_order(guard.map, config.only)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        report = run_grade_audit(
            guard, sim, stack.targets(settings), config, jobs=audit_jobs(stack.platform, factor)
        )
    finally:
        if sim is not None:
            sim.stop()
        stack.stop()
    print(
        json.dumps(report, indent=2, default=str) if args.json else "\n".join(summary_lines(report))
    )
    print(f"report: {report['json_path']}" + (f" (id {report['id']})" if "id" in report else ""))
    return 0 if report["status"] == "passed" else EXIT_FAILED


def audit_simulator(
    settings: Any, stack: Any, rate: float, seed: int | None, receiver_port: int = 0
) -> Any:
    """Merchant traffic against ``stack`` from the demo merchants, with their receivers
    answering every notification (until the audit fails them)."""
    from simulator.merchants import ensure_demo_merchants
    from simulator.simulator import SimConfig, Simulator

    from .servers import free_port

    port = receiver_port or free_port("127.0.0.1")
    merchants = ensure_demo_merchants(
        stack.platform.paycore, settings.var_dir, f"http://127.0.0.1:{port}", settings.pay_orgs
    )
    config = SimConfig(
        api_url=stack.settings.api_url,
        rate=rate,
        seed=seed,
        receiver_port=port,
        receiver_failure_ratio=0.0,
        notify_secret=settings.notify_secret(),
        sandbox_url=stack.settings.sandbox_url,
        sandbox_admin_token=stack.admin_token,
    )
    return Simulator(config, merchants)
