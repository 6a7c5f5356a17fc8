"""``paywatch simulate``: merchant traffic, failing receivers and scripted drills.

Exit codes: 0 nothing lost or doubled (and a drill's checks passed), 1 payments lost or
doubled or a drill check failed, 3 the drill does not apply to these backends.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

SANDBOX_TOKEN_ENV = "PAYWATCH_SANDBOX_ADMIN_TOKEN"
EXIT_FAILED, EXIT_NOT_APPLICABLE = 1, 3


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` arguments and handler to ``p``."""
    a = p.add_argument
    a("--rate", type=float, default=2.0, help="payments per second (Poisson arrivals)")
    a("--duration", type=float, help="seconds of traffic (default 60; a drill: its own)")
    a("--drill", help="a built-in drill (see --list-drills) or a YAML drill file")
    a("--list-drills", action="store_true", help="list the built-in drills and exit")
    a("--org", help="the pay org a channel drill targets (default: the first pay org)")
    a("--time-factor", type=float, default=1.0, help="scale the drill timeline (0.1: 10x faster)")
    a("--seed", type=int, help="fix the traffic shape")
    a("--api-url", help="the pay core API (default PAYWATCH_API_URL)")
    a("--merchant-id", help="send as this merchant (with --token) instead of the demo ones")
    a("--token", help="the merchant's API token (or PAYWATCH_SIM_TOKEN)")
    a("--product", action="append", help="ORDER_TYPE:SUB_TYPE of --merchant-id, repeatable")
    a("--pay-org", action="append", help="pay orgs of --merchant-id, repeatable")
    a(
        "--embedded",
        action="store_true",
        help="start sandbox, API and worker in this process (fault proxies for Redis/database)",
    )
    a("--receiver-port", type=int, default=8300, help="merchant notification receivers")
    a("--receiver-failure", type=float, default=0.1, help="share of notifications failed")
    a("--settle", type=float, default=90.0, help="seconds to wait for pending payments")
    a("--sandbox-url", help="the sandbox channel (default PAYWATCH_SANDBOX_URL)")
    a("--sandbox-admin-token", help=f"the sandbox admin token (default ${SANDBOX_TOKEN_ENV})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The ``simulate`` command."""
    import logging

    from runtime.settings import Settings
    from simulator.drills import BUILTIN, load_drill

    if args.list_drills:
        for d in BUILTIN.values():
            print(f"{d.name:16} {d.duration_s:>5.0f}s  needs {d.needs:8}  {d.summary}")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    drill = load_drill(args.drill) if args.drill else None
    stack: Any = None
    sim: Any = None
    try:
        if args.embedded:
            stack = _embedded(settings, args)
        api_url = stack.settings.api_url if stack else (args.api_url or settings.api_url)
        sim = _simulator(settings, args, api_url, stack)
        if drill is None:
            return _traffic(sim, args)
        return _drill(drill, sim, settings, args, stack)
    finally:
        if sim is not None:
            sim.stop()
        if stack is not None:
            stack.stop()


def _embedded(settings: Any, args: argparse.Namespace) -> Any:
    from .drill_speed import fast_jobs
    from .embedded import EmbeddedOptions, EmbeddedPlatform

    jobs = fast_jobs(args.time_factor) if args.time_factor < 1 else None
    token = args.sandbox_admin_token or settings.sandbox_admin_token()
    opts = EmbeddedOptions(
        sandbox_admin_token=token, jobs=jobs, sample_interval_s=1.0 if jobs else None
    )
    stack = EmbeddedPlatform(settings, opts).start()
    print(
        f"embedded platform: API {stack.settings.api_url}, sandbox {stack.settings.sandbox_url}"
        f", proxies: {', '.join(stack.proxies) or 'none'}"
    )
    return stack


def _merchants(settings: Any, args: argparse.Namespace, stack: Any) -> list[Any]:
    from simulator.merchants import SimMerchant, ensure_demo_merchants

    token = args.token or os.environ.get("PAYWATCH_SIM_TOKEN")
    if args.merchant_id:
        if not token:
            raise SystemExit("--merchant-id needs --token (or PAYWATCH_SIM_TOKEN)")
        pairs = [(p.split(":", 1) + ["default"])[:2] for p in args.product or ["goods:physical"]]
        products = tuple((o, st) for o, st in pairs)
        return [
            SimMerchant(
                "custom",
                args.merchant_id,
                token,
                products,
                tuple(args.pay_org or settings.pay_orgs),
                ("instant", "guaranteed"),
            )
        ]
    base = f"http://127.0.0.1:{args.receiver_port}"
    if stack is not None:
        return ensure_demo_merchants(
            stack.platform.paycore, settings.var_dir, base, settings.pay_orgs
        )
    from paycore import Database, PayCore

    from .migrate import upgrade_database

    db = Database(settings.database_url)
    try:
        upgrade_database(db.engine)
        return ensure_demo_merchants(PayCore(db), settings.var_dir, base, settings.pay_orgs)
    finally:
        db.dispose()


def _simulator(settings: Any, args: argparse.Namespace, api_url: str, stack: Any) -> Any:
    from simulator.simulator import SimConfig, Simulator

    sandbox_url = (
        stack.settings.sandbox_url if stack else (args.sandbox_url or settings.sandbox_url)
    )
    token = (
        (stack.admin_token if stack else None)
        or args.sandbox_admin_token
        or settings.sandbox_admin_token()
    )
    config = SimConfig(
        api_url=api_url,
        rate=args.rate,
        seed=args.seed,
        receiver_port=args.receiver_port,
        receiver_failure_ratio=args.receiver_failure,
        notify_secret=settings.notify_secret(),
        sandbox_url=sandbox_url,
        sandbox_admin_token=token,
    )
    return Simulator(config, _merchants(settings, args, stack))


def _traffic(sim: Any, args: argparse.Namespace) -> int:
    duration = 60.0 if args.duration is None else args.duration
    sim.start()
    print(f"simulating ~{args.rate:g} payments/s for {duration:g}s against {sim.config.api_url}")
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        time.sleep(min(1.0, deadline - time.monotonic()))
    sim.stop_traffic()
    left = sim.settle(args.settle)
    result = sim.audit()
    stats = sim.stats.as_dict()
    print(f"traffic: {stats}")
    print(
        f"audit: checked {result.checked}, paid {result.paid}, unpaid {result.unpaid}, "
        f"lost {result.lost} (unresolved {result.unresolved}), doubled {result.doubled}, "
        f"still pending {left}"
    )
    for ex in result.examples:
        print(f"  {ex}")
    return EXIT_FAILED if result.lost or result.doubled else 0


def _drill(drill: Any, sim: Any, settings: Any, args: argparse.Namespace, stack: Any) -> int:
    from simulator.runner import DrillTargets, SandboxAdmin, run_drill

    org = args.org or settings.pay_orgs[0]
    target = org if drill.needs == "sandbox" else drill.needs
    aimed = drill.for_org(org).scaled(args.time_factor)
    if args.duration is not None:  # more (or less) traffic, never cutting a step off
        last = max((s.at_s for s in aimed.steps), default=0.0)
        aimed = dataclasses.replace(aimed, duration_s=max(args.duration, last))
    if stack is not None:
        targets = stack.targets(settings)
    else:
        targets = DrillTargets(
            sandbox=SandboxAdmin(sim.config.sandbox_url, sim.config.sandbox_admin_token),
            engine=_engine(settings.database_url),
            prometheus_url=settings.prometheus_url,
            var_dir=settings.var_dir,
        )
    print(
        f"drill {aimed.name} on {target}: {aimed.summary} "
        f"({aimed.duration_s:g}s of traffic at ~{args.rate:g}/s)"
    )
    report = run_drill(
        aimed, sim, targets, target=target, time_factor=args.time_factor, settle_s=args.settle
    )
    from simulator.report import summary_lines

    print("\n".join(summary_lines(report)))
    print(f"report: {report['json_path']}" + (f" (id {report['id']})" if "id" in report else ""))
    if report["status"] == "not_applicable":
        return EXIT_NOT_APPLICABLE
    return 0 if report["status"] == "passed" else EXIT_FAILED


def _engine(url: str) -> Any:
    """The platform's database for the evidence, or None when it cannot be reached."""
    from paycore.db.engine import create_engine_from_url

    try:
        engine = create_engine_from_url(url)
        with engine.connect():
            pass
        return engine
    except Exception as exc:  # noqa: BLE001 - the drill still runs, with less evidence
        print(
            f"warning: database unreachable ({type(exc).__name__}): no platform evidence",
            file=sys.stderr,
        )
        return None
