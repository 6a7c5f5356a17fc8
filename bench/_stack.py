"""The pay_e2e bench's plumbing: a throw-away schema, the API and the sandbox channel in
their own processes, merchant onboarding through the CLI, and the pgbench reference run.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from _schema import scratch_schema  # bench/_schema.py

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "bench" / "sql"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ADMIN_TOKEN = "pay-e2e-admin"
ORG = "SANDBOX_A"
TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)$", re.M)
DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
LATENCY = re.compile(r"^latency average = ([0-9.]+) ms$", re.M)


def log(msg: str) -> None:
    print(f"[pay_e2e] {msg}", file=sys.stderr, flush=True)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used; NaN without ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU seconds used so far by the live PostgreSQL server processes (the pool's
    backends live through a window); NaN without ``/proc``."""
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                pids.append(int(comm.parent.name))
        except OSError:
            continue  # exited meanwhile
    used = [cpu for cpu in map(proc_cpu, pids) if not math.isnan(cpu)]
    return sum(used) if used else float("nan")


def host_cpu() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole host; NaNs without ``/proc``."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan"), float("nan")
    return float(sum(ticks) - ticks[3] - ticks[4]), float(sum(ticks))  # minus idle, iowait


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def bench_schema(url: str) -> Iterator[tuple[str, str]]:
    """A fresh, migrated schema; yields (schema, url with its search_path). Dropped after."""
    with scratch_schema(url, "bench_pay", log) as pair:
        yield pair


@dataclass
class Stack:
    """The API (``runtime.cli serve``, ``replicas`` processes) and the sandbox
    (``runtime.cli sandbox``) as subprocesses sharing one var dir (so one generated
    channel secrets file). Each replica has its own port, Snowflake node id and callback
    URL: the channel calls back the replica that sent the payment, as behind a load
    balancer with per-replica callback hosts."""

    db_url: str
    replicas: int = 1
    sandbox_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    token: str = ""

    def __post_init__(self) -> None:
        self.var_dir = tempfile.mkdtemp(prefix="pay_e2e_")
        self.api_ports = [free_port() for _ in range(self.replicas)]
        self.api_urls = [f"http://127.0.0.1:{port}" for port in self.api_ports]
        self.api_url = self.api_urls[0]
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.env = {
            **os.environ,
            "PAYWATCH_DATABASE_URL": self.db_url,
            "PAYWATCH_SANDBOX_URL": self.sandbox_url,
            "PAYWATCH_VAR_DIR": self.var_dir,
            "PYTHONUNBUFFERED": "1",
        }

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "runtime.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"runtime.cli {args[0]} failed: {proc.stderr[-2000:]}")
        return proc.stdout

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        out = open(Path(self.var_dir) / f"{name}.log", "wb")  # noqa: SIM115 - child owns it
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "runtime.cli", *args],
                env=env or self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
        out.close()

    def start(self, knobs: dict[str, float]) -> None:
        # onboarding first: it writes the channel secrets file both servers then read
        out = self.cli(
            "merchant",
            "add",
            "--name",
            "pay-e2e",
            "--product",
            "goods:physical",
            "--pay-org",
            ORG,
            "--fee-bps",
            "100",
        )
        found = re.search(r"^token:\s+(\S+)", out, re.M)
        if found is None:
            raise RuntimeError("merchant add printed no token")
        self.token = found[1]
        self.spawn(
            "sandbox", "sandbox", "--port", str(self.sandbox_port), "--admin-token", ADMIN_TOKEN
        )
        for n, (port, url) in enumerate(zip(self.api_ports, self.api_urls, strict=True)):
            env = self.env | {"PAYWATCH_API_URL": url, "PAYWATCH_NODE_ID": str(100 + n)}
            self.spawn(f"api{n}", "serve", "--port", str(port), "--log-level", "warning", env=env)
        self.wait_ready(f"{self.sandbox_url}/healthz")
        for url in self.api_urls:
            self.wait_ready(f"{url}/readyz")
        r = httpx.put(
            f"{self.sandbox_url}/admin/knobs/{ORG}",
            json=knobs,
            headers={"X-Sandbox-Admin": ADMIN_TOKEN},
        )
        r.raise_for_status()
        log(f"api {', '.join(self.api_urls)}, sandbox {self.sandbox_url}, knobs {r.json()}")

    def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a server exited early; logs in {self.var_dir}\n{self.logs()}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{url} not ready after {timeout:.0f}s\n{self.logs()}")

    def logs(self, tail: int = 1500) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
            for p in sorted(Path(self.var_dir).glob("*.log"))
        )

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the servers and this process, and host CPU ticks."""
        busy, total = host_cpu()
        return {
            "sandbox": proc_cpu(self.procs[0].pid),
            "api": sum(proc_cpu(p.pid) for p in self.procs[1:]),
            "client": time.process_time(),
            "postgres": postgres_cpu(),
            "host_busy": busy,
            "host_total": total,
        }

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        shutil.rmtree(self.var_dir, ignore_errors=True)


def _run_sampled(
    cmd: list[str], env: dict[str, str], seconds: int
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run pgbench; also return the CPU (in cores) that PostgreSQL and pgbench used in
    its middle (its backends exit with it, so they are read while they live)."""
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as popen:
        edge = min(1.0, seconds / 4)
        time.sleep(edge)
        pg0, b0, t0 = postgres_cpu(), proc_cpu(popen.pid), time.perf_counter()
        time.sleep(max(0.1, seconds - 2 * edge))
        pg1, b1, t1 = postgres_cpu(), proc_cpu(popen.pid), time.perf_counter()
        out, err = popen.communicate(timeout=seconds + 120)
    done = subprocess.CompletedProcess(cmd, popen.returncode, out, err)
    return done, (pg1 - pg0) / (t1 - t0), (b1 - b0) / (t1 - t0)


class Pgbench:
    """The reference runs: ``pay_setup.sql`` loaded once into ``schema``, then
    ``pay_one.sql`` under pgbench as often as :meth:`run` is called (the bench runs it
    before and after the HTTP run, so drift in the host's speed hits both sides alike)."""

    def __init__(self, url: str, schema: str, clients: int, mode: str) -> None:
        self.exe = shutil.which("pgbench") or "/usr/bin/pgbench"
        self.clients, self.mode = clients, mode
        self.engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        self.counted = self.runs = 0  # payments pgbench reported, and runs, so far
        u = sa.make_url(url)
        self.env = {**os.environ, "PGOPTIONS": f"-csearch_path={schema}"}
        for key, value in (
            ("PGHOST", u.host),
            ("PGPORT", u.port),
            ("PGUSER", u.username),
            ("PGPASSWORD", u.password),
            ("PGDATABASE", u.database),
        ):
            if value is not None:
                self.env[key] = str(value)
        with self.engine.begin() as conn:
            conn.exec_driver_sql((SQL_DIR / "pay_setup.sql").read_text())

    def run(self, seconds: int) -> dict[str, float]:
        """One pgbench run of ``seconds``; checks that every payment pgbench counted (in
        this and earlier runs) left a paid trade behind."""
        cmd = [
            self.exe,
            "-n",
            "-c",
            str(self.clients),
            "-j",
            str(min(2, self.clients)),
            "-T",
            str(seconds),
            "-M",
            self.mode,
            "-f",
            str(SQL_DIR / "pay_one.sql"),
        ]
        log(" ".join(cmd[1:]))
        proc, pg_rate, bench_rate = _run_sampled(cmd, self.env, seconds)
        out = proc.stdout
        tps, done, failed = TPS.search(out), DONE.search(out), FAILED.search(out)
        if proc.returncode != 0 or not tps or not done or (failed and int(failed[1])):
            raise RuntimeError(f"pgbench failed (exit {proc.returncode}):\n{out}\n{proc.stderr}")
        self.counted += int(done[1])
        self.runs += 1
        with self.engine.connect() as conn:
            paid = conn.exec_driver_sql(
                "SELECT count(*) FROM trades WHERE merchant_id = 'MPGBENCH' AND status = 'paid'"
            ).scalar_one()
        # -T stops clients mid-script: at most one unfinished payment per client and run
        if not self.counted <= paid <= self.counted + self.clients * self.runs:
            raise RuntimeError(f"pgbench counted {self.counted} payments, {paid} trades are paid")
        lat = LATENCY.search(out)
        return {
            "tps": float(tps[1]),
            "seconds": float(seconds),
            "latency_ms": float(lat[1]) if lat else float("nan"),
            "postgres_cpu_ms": pg_rate * 1000 / float(tps[1]),
            "pgbench_cpu_ms": bench_rate * 1000 / float(tps[1]),
        }

    def vacuum(self) -> None:
        """VACUUM ANALYZE the schema's tables, so what one run wrote does not leave
        autovacuum work (or stale statistics) to the next."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            tables = (
                conn.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
                .scalars()
                .all()
            )
            for table in tables:
                conn.exec_driver_sql(f'VACUUM ANALYZE "{table}"')

    def close(self) -> None:
        self.engine.dispose()


def combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """Several reference runs as one: every figure weighted by the run's length."""
    total = sum(r["seconds"] for r in runs)
    return {
        k: sum(r[k] * r["seconds"] for r in runs) / total
        for k in ("tps", "latency_ms", "postgres_cpu_ms", "pgbench_cpu_ms")
    }
