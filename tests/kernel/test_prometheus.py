"""A real Prometheus server scrapes `netmon --serve` and sees the exact
bytes a generator process sent."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .service import Netmon, free_port, wait_until
from .traffic import tcp_client, tcp_server

SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: netmon
    static_configs:
      - targets: ["{target}"]
"""


class Prometheus:
    """A Prometheus server of our own: temp storage, loopback only."""

    def __init__(self, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is missing: run `make install` (Debian package prometheus)")
        self.dir = Path(tempfile.mkdtemp(prefix="netmon-prom-"))
        (self.dir / "prometheus.yml").write_text(SCRAPE_CONFIG.format(target=target))
        self.port = free_port()
        self.log = open(self.dir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, ConnectionError):
            return 0, b""

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.logs()}")
        return self._get("/-/ready")[0] == 200

    def query(self, promql: str) -> list[dict[str, Any]]:
        status, body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        if status != 200:
            return []
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        result: list[dict[str, Any]] = reply["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def logs(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_prometheus_scrapes_exact_bytes(spawn: Any) -> None:
    netmon = Netmon("--serve", "127.0.0.1:0", "--interval", "500")
    prometheus = None
    try:
        url = netmon.metrics_url()
        target = url.removeprefix("http://").removesuffix("/metrics")
        prometheus = Prometheus(target)
        wait_until(prometheus.ready, "prometheus to be ready")
        wait_until(lambda: prometheus.value('up{job="netmon"}') == 1.0, "up == 1")

        server = spawn("nm-prom-sink", tcp_server, "127.0.0.1", "send", "recv", 777_777, 1)
        port = server.recv()
        client = spawn("nm-prom-gen", tcp_client, "127.0.0.1", port, "send", "recv", 777_777, 1)
        sent = sum(t.bytes_sent for t in client.result().flows.values())
        server.send("done")
        server.result()
        assert sent == 777_777

        query = 'sum(netmon_process_transmit_bytes_total{job="netmon",process="nm-prom-gen"})'
        wait_until(lambda: prometheus.value(query) == sent, f"{query} == {sent}")
        # The generator's series has exactly the labels of the documented shape.
        (series,) = prometheus.query(
            'netmon_process_transmit_bytes_total{job="netmon",process="nm-prom-gen"}'
        )
        assert set(series["metric"]) == {"__name__", "instance", "job", "process", "protocol"}
        assert series["metric"]["protocol"] == "TCP"
        assert netmon.stop() == 0
    except BaseException:
        if prometheus is not None:
            print(prometheus.logs())
        raise
    finally:
        netmon.kill()
        if prometheus is not None:
            prometheus.stop()
