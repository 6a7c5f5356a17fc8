"""The detect bench's processes: a real Alertmanager and a real Prometheus (Debian's
``prometheus-alertmanager`` and ``prometheus``), each running until its block ends."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from runtime.servers import free_port

AM_CONFIG = """\
route:
  receiver: blackhole
  group_by: [alertname, evaluator]
receivers:
  - name: blackhole
"""


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(f"{names[0]} not found (Debian packages prometheus, prometheus-alertmanager)")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready within {timeout} s")


@contextmanager
def process(args: list[str], ready_url: str, log_path: Path) -> Iterator[None]:
    """``args`` running until the block ends; waits for ``ready_url``."""
    with log_path.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(ready_url, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def start_alertmanager(tmp: Path) -> tuple[list[str], str]:
    (tmp / "am.yml").write_text(AM_CONFIG)
    (tmp / "am-data").mkdir()
    port = free_port()
    args = [
        binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={tmp / 'am.yml'}",
        f"--storage.path={tmp / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    return args, f"http://127.0.0.1:{port}"


def start_prometheus(
    tmp: Path, rules: list[str], api_url: str, am_url: str, every_s: float
) -> tuple[list[str], str]:
    """Scrape and evaluate every ``every_s``, the rule files ``rules``, alerts to ``am_url``."""
    files = []
    for n, text in enumerate(rules):
        files.append(str(tmp / f"rules-{n}.yml"))
        Path(files[-1]).write_text(text)
    (tmp / "prom-data").mkdir()
    config = {
        "global": {
            "scrape_interval": f"{every_s:g}s",
            "evaluation_interval": f"{every_s:g}s",
            "external_labels": {"evaluator": "prometheus"},
        },
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [urlsplit(am_url).netloc]}]}]
        },
        "rule_files": files,
        "scrape_configs": [
            {"job_name": "paywatch", "static_configs": [{"targets": [urlsplit(api_url).netloc]}]}
        ],
    }
    (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    args = [
        binary("prometheus"),
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return args, f"http://127.0.0.1:{port}"
