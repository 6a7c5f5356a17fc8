"""An embedded platform for drills: sandbox, API and worker in this process, with the
platform's database and Redis connections routed through fault proxies.

Redis and database drills need the platform to connect *through* a proxy this process
controls, so ``paywatch simulate --embedded`` (and the drill tests) start the platform
here: :class:`EmbeddedPlatform`. With ``time_factor < 1`` the worker also runs the
platform's own jobs at drill speed (:func:`fast_jobs`): the default alert rules with
their windows and hold times scaled (renamed ``<rule>_fast`` so they never fight the
normal evaluator) and an active query that asks about stuck orders after seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from alerts import AlertEngine
from alerts import default_rules as alert_rules
from alerts.base import BurnWindow, Rule
from alerts.burnrate import BurnRateRule
from alerts.rules import ThresholdRule
from alerts.spec import QuerySpec
from paycore.jobs.active_query import ActiveQuery

from ..bootstrap import Platform, build_platform
from ..settings import Settings
from ..up import ServerThread
from .faultproxy import FaultProxy, proxied_url, upstream_of
from .runner import DrillTargets, SandboxAdmin

log = logging.getLogger(__name__)
Job = tuple[Callable[[], Any], float, str]


def _spec(spec: Any, factor: float) -> Any:
    return replace(spec, window=spec.window * factor) if isinstance(spec, QuerySpec) else spec


def scaled_rule(rule: Rule, factor: float) -> Rule:
    """``rule`` with its windows and hold times multiplied by ``factor``, renamed."""
    absent = getattr(rule, "absent_for_s", None)
    hold = float(getattr(rule, "for_s", 0.0))
    common: dict[str, Any] = {"name": f"{rule.name}_fast", "for_s": hold * factor,
                              "absent_for_s": absent * factor if absent else None}  # fmt: skip
    if isinstance(rule, BurnRateRule):
        windows = tuple(BurnWindow(w.long_s * factor, w.short_s * factor, w.factor, w.severity)
                        for w in rule.windows)  # fmt: skip
        return replace(rule, windows=windows, **common)
    if isinstance(rule, ThresholdRule):
        traffic = rule.min_traffic
        if traffic is not None:
            traffic = replace(traffic, spec=_spec(traffic.spec, factor))
        return replace(rule, query=_spec(rule.query, factor), min_traffic=traffic, **common)
    return rule


def fast_jobs(time_factor: float, *, every_s: float = 2.0) -> Callable[[Platform], list[Job]]:
    """Worker jobs at drill speed (see the module docstring), for :class:`EmbeddedPlatform`."""

    def build(platform: Platform) -> list[Job]:
        core, obs = platform.paycore, platform.observability
        rules = [scaled_rule(r, time_factor) for r in alert_rules(platform.settings.pay_orgs)]
        engine = AlertEngine(core.db.engine, obs.query, rules)
        gateway = platform.front.gateway
        after = max(1.0, 60.0 * time_factor)
        query = ActiveQuery(core, gateway, first_after_s=after, interval_s=after)
        return [(engine.evaluate, every_s, "alerts_fast"), (query.run_once, every_s, "query_fast")]

    return build


@dataclass(frozen=True)
class EmbeddedOptions:
    host: str = "127.0.0.1"
    api_port: int = 0
    sandbox_port: int = 0
    proxies: bool = True  #: route the database (if over the network) and Redis via proxies
    sandbox_admin_token: str | None = None
    jobs: Callable[[Platform], list[Job]] | None = None  #: extra worker jobs
    sample_interval_s: float | None = None  #: the metrics sampler's interval


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host``."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedPlatform:
    """Sandbox, API and worker on threads over one platform; :meth:`stop` undoes it."""

    def __init__(self, settings: Settings, options: EmbeddedOptions | None = None) -> None:
        self.settings = settings
        self.options = options or EmbeddedOptions()
        self.admin_token = self.options.sandbox_admin_token or secrets.token_urlsafe(16)
        self.proxies: dict[str, FaultProxy] = {}
        self.platform: Platform | None = None
        self.stop_event = threading.Event()
        self._undo: list[Callable[[], Any]] = []
        self._engine: sa.Engine | None = None

    def start(self) -> EmbeddedPlatform:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from paycore.channels.sandbox import SandboxConfig, create_sandbox_app

        from ..worker import serve_worker

        s, o = self.settings, self.options
        changes: dict[str, Any] = {}
        for name, url, port in (("database", s.database_url, 5432), ("redis", s.redis_url, 6379)):
            upstream = upstream_of(url, port) if url and o.proxies else None
            if upstream is not None and url is not None:
                proxy = FaultProxy(upstream, name=name).start()
                self._undo.append(proxy.stop)
                self.proxies[name] = proxy
                changes["database_url" if name == "database" else "redis_url"] = proxied_url(
                    url, proxy
                )
        api_port = o.api_port or free_port(o.host)
        sandbox_port = o.sandbox_port or free_port(o.host)
        changes.update(api_url=f"http://{o.host}:{api_port}",
                       sandbox_url=f"http://{o.host}:{sandbox_port}")  # fmt: skip
        self.settings = dataclasses.replace(s, **changes)
        platform = self.platform = build_platform(self.settings, role="all")
        self._undo.append(platform.close)
        if o.sample_interval_s and platform.observability is not None:
            platform.observability.sampler.interval = o.sample_interval_s
        if o.jobs is not None:
            platform.worker_jobs.extend(o.jobs(platform))
        platform.start()
        sandbox = ServerThread(create_sandbox_app(SandboxConfig(
            secrets=platform.channel_secrets, admin_token=self.admin_token)),
            o.host, sandbox_port, "sandbox").start()  # fmt: skip
        self._undo.append(sandbox.stop)
        api = ServerThread(platform.api_app(), o.host, api_port, "api").start()
        self._undo.append(api.stop)
        worker = threading.Thread(target=serve_worker, args=(platform, self.stop_event),
                                  name="worker", daemon=True)  # fmt: skip
        worker.start()

        def stop_worker() -> None:
            self.stop_event.set()
            worker.join(30)

        self._undo.append(stop_worker)

    def stop(self) -> None:
        """Stop worker, API, sandbox, platform and proxies (in reverse order)."""
        while self._undo:
            fn = self._undo.pop()
            try:
                fn()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("stopping a part of the embedded platform failed")
        if self._engine is not None:
            self._engine.dispose()

    def targets(self, original: Settings, var_dir: str | None = None) -> DrillTargets:
        """Drill targets: the sandbox admin API, the proxies, and a direct database
        engine (``original``'s URL: the evidence is read around the faults)."""
        assert self.platform is not None, "start() first"
        if self._engine is None:
            from paycore.db.engine import create_engine_from_url

            self._engine = create_engine_from_url(original.database_url)
        return DrillTargets(sandbox=SandboxAdmin(self.settings.sandbox_url, self.admin_token),
                            proxies=dict(self.proxies), engine=self._engine,
                            core=self.platform.paycore,
                            prometheus_url=original.prometheus_url,
                            var_dir=var_dir or original.var_dir)  # fmt: skip
