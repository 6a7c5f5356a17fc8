"""The platform on threads: sandbox, API and worker in one process over one platform.

``paywatch up`` runs it (and adds the simulator and the console); ``paywatch simulate
--embedded`` and the drill tests run it with the platform's database and Redis
connections routed through fault proxies (:mod:`simulator.faultproxy`), which a
Redis or database drill needs: the platform must connect *through* a proxy this process
controls.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from simulator.faultproxy import FaultProxy, proxied_url, upstream_of
from simulator.runner import DrillTargets, SandboxAdmin

from .bootstrap import Platform, build_platform
from .servers import ServerThread, free_port
from .settings import Settings

log = logging.getLogger(__name__)
Job = tuple[Callable[[], Any], float, str]


@dataclass(frozen=True)
class EmbeddedOptions:
    host: str = "127.0.0.1"
    api_port: int = 0
    sandbox_port: int = 0
    proxies: bool = True  #: route the database (if over the network) and Redis via proxies
    sandbox_admin_token: str | None = None
    jobs: Callable[[Platform], list[Job]] | None = None  #: extra worker jobs
    sample_interval_s: float | None = None  #: the metrics sampler's interval


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
        from simulator.sandbox import SandboxConfig, create_sandbox_app

        from .admin_api import mount_admin

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
        changes.update(
            api_url=f"http://{o.host}:{api_port}", sandbox_url=f"http://{o.host}:{sandbox_port}"
        )
        self.settings = dataclasses.replace(s, **changes)
        platform = self.platform = build_platform(self.settings, role="all")
        self._undo.append(platform.close)
        if o.sample_interval_s and platform.observability is not None:
            platform.observability.sampler.interval = o.sample_interval_s
        if o.jobs is not None:
            platform.worker_jobs.extend(o.jobs(platform))
        platform.start()
        sandbox = ServerThread(
            create_sandbox_app(  # it hosts the coupon service too (make up has coupons)
                SandboxConfig(
                    secrets=platform.channel_secrets,
                    admin_token=self.admin_token,
                    coupon_secret=self.settings.coupon_secret(),
                )
            ),
            o.host,
            sandbox_port,
            "sandbox",
        ).start()
        self._undo.append(sandbox.stop)
        app = mount_admin(platform.api_app(), platform)  # the admin API at /admin/v1
        api = ServerThread(app, o.host, api_port, "api").start()
        self._undo.append(api.stop)
        worker = threading.Thread(target=self._run_worker, name="worker", daemon=True)
        worker.start()

        def stop_worker() -> None:
            self.stop_event.set()
            worker.join(30)

        self._undo.append(stop_worker)

    def _run_worker(self) -> None:
        from .worker import serve_worker

        assert self.platform is not None
        try:
            serve_worker(self.platform, self.stop_event)
        except Exception:  # noqa: BLE001 - a dead worker is logged; the API keeps serving
            log.exception("worker stopped with an error")

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
        return DrillTargets(
            sandbox=SandboxAdmin(self.settings.sandbox_url, self.admin_token),
            proxies=dict(self.proxies),
            engine=self._engine,
            core=self.platform.paycore,
            prometheus_url=original.prometheus_url,
            var_dir=var_dir or original.var_dir,
        )
