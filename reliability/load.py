"""A bounded load test against the local cloud's API: N clients for D seconds, loopback only.

Each client thread keeps one HTTP/1.1 connection to the gateway and sends a mix of valid and invalid
requests, SigV4-signed as `mdk predict` signs them (except the unsigned kind). Every request is
accounted for: its kind, status and latency. A request is *unexpected* when its status is not the one
its kind must get (a valid prediction 200, malformed JSON 400, a wrong shape 422, unsigned 403) or when
it fails at the transport; a 429 is the stage's throttling (the config's ``api.throttle_rate``, as API
Gateway applies it) and is counted apart, neither expected nor unexpected. A sampler records the resident memory of every process the cloud runs (this
one, each function's emulator and runtime, each serving container) every ``sample_s`` seconds.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mdk.local.rie import session_members

IRIS_ROWS = [[6.3, 3.4, 5.6, 2.4], [5.8, 2.7, 5.1, 1.9], [5.0, 3.4, 1.5, 0.2], [6.1, 2.8, 4.7, 1.2]]
#: kind -> (share of requests, the status it must get)
MIX: dict[str, tuple[float, int]] = {
    "iris_predict": (0.55, 200),
    "digits_predict": (0.10, 200),
    "iris_health": (0.10, 200),
    "malformed_json": (0.10, 400),
    "wrong_shape": (0.10, 422),
    "unsigned": (0.05, 403),
}


@dataclass
class Sample:
    kind: str
    status: int  # 0: transport failure
    latency_ms: float
    at: float


@dataclass
class LoadResult:
    duration_s: float
    clients: int
    samples: list[Sample]
    memory: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # process -> (t, MiB)

    def summary(self) -> dict[str, Any]:
        by_kind: dict[str, list[Sample]] = defaultdict(list)
        for sample in self.samples:
            by_kind[sample.kind].append(sample)
        kinds = {}
        for kind, samples in sorted(by_kind.items()):
            latencies = sorted(s.latency_ms for s in samples)
            expected = MIX[kind][1]
            kinds[kind] = {
                "requests": len(samples),
                "statuses": dict(Counter(s.status for s in samples)),
                "unexpected": sum(s.status not in (expected, 429) for s in samples),
                "throttled": sum(s.status == 429 for s in samples),
                "p50_ms": round(statistics.median(latencies), 2),
                "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
            }
        return {
            "duration_s": round(self.duration_s, 1),
            "clients": self.clients,
            "requests": len(self.samples),
            "throughput_rps": round(len(self.samples) / self.duration_s, 1),
            "unexpected": sum(k["unexpected"] for k in kinds.values()),
            "throttled": sum(k["throttled"] for k in kinds.values()),
            "server_errors": sum(s.status >= 500 for s in self.samples),
            "kinds": kinds,
            "memory": memory_summary(self.memory),
        }


def memory_summary(series: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    """Per process: first, last and peak RSS, and steady-state growth = mean of the last fifth of the run
    over the mean of its third fifth. The first two fifths are warm-up (lazy imports, buffers and the
    local CloudWatch's retention window filling) and are reported as first/peak, not judged: a leak
    keeps growing after them."""
    out = {}
    for name, points in sorted(series.items()):
        values = [mib for _, mib in points]
        if len(values) < 5:
            continue
        fifth = max(1, len(values) // 5)
        early, late = statistics.mean(values[2 * fifth : 3 * fifth]), statistics.mean(values[-fifth:])
        out[name] = {
            "samples": len(values),
            "first_mib": round(values[0], 1),
            "last_mib": round(values[-1], 1),
            "peak_mib": round(max(values), 1),
            "growth_pct": round((late - early) / early * 100, 1) if early else 0.0,
        }
    return out


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cloud_processes(cloud: Any) -> dict[str, int]:
    """Every process the local cloud runs, by a readable name."""
    found = {"local-cloud (moto, gateway, runner)": os.getpid()}
    for (function, version), process in cloud.runner.processes().items():
        short = function.rsplit("-", 1)[-1] if len(function) > 40 else function
        for pid in session_members(process.pid):
            role = "emulator" if pid == process.pid else "runtime"
            found[f"{short}:{version} {role} {pid}"] = pid
    for index, container in enumerate(cloud.containers.running()):
        found[f"serving container {index} {container.process.pid}"] = container.process.pid
    return found


def _request(kind: str, api: str, digits: list[list[float]]) -> tuple[str, str, bytes, dict[str, str], bool]:
    """(method, path, body, headers, sign) for one request of ``kind``."""
    json_headers = {"content-type": "application/json"}
    if kind == "iris_predict":
        rows = random.choices(IRIS_ROWS, k=random.randint(1, 8))
        return "POST", "models/iris/predict", json.dumps({"instances": rows}).encode(), json_headers, True
    if kind == "digits_predict":
        return "POST", "models/digits/predict", json.dumps({"instances": digits}).encode(), json_headers, True
    if kind == "iris_health":
        return "GET", "models/iris/health", b"", {}, True
    if kind == "malformed_json":
        return "POST", "models/iris/predict", b'{"instances": [[6.3, 3.4,', json_headers, True
    if kind == "wrong_shape":
        return "POST", "models/iris/predict", b'{"instances": [[1, 2, 3]]}', json_headers, True
    return "GET", "models/iris/health", b"", {}, False


def run(
    cloud: Any,
    *,
    duration_s: float,
    clients: int,
    sample_s: float = 2.0,
    credentials: tuple[str, str] = ("test", "test"),
) -> LoadResult:
    api = cloud.gateway.url
    parts = urlsplit(api)
    digits = json.loads((Path(__file__).resolve().parents[1] / "models/digits/v1/example.json").read_text())[
        "instances"
    ]
    kinds, weights = list(MIX), [share for share, _ in MIX.values()]
    samples: list[Sample] = []
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + duration_s
    memory: dict[str, list[tuple[float, float]]] = defaultdict(list)
    done = threading.Event()

    def sampler() -> None:
        while not done.wait(sample_s):
            now = time.monotonic() - started
            for name, pid in cloud_processes(cloud).items():
                if (mib := rss_mib(pid)) is not None:
                    memory[name].append((now, mib))

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        local: list[Sample] = []
        signer = SigV4Auth(Credentials(*credentials), "execute-api", cloud.region)
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            method, path, body, headers, sign = _request(kind, api, digits)
            url = api + path
            if sign:
                request = AWSRequest(method=method, url=url, data=body, headers=headers)
                signer.add_auth(request)
                headers = dict(request.headers.items())
            t0 = time.perf_counter()
            try:
                conn.request(method, urlsplit(url).path, body=body or None, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
            local.append(Sample(kind, status, (time.perf_counter() - t0) * 1000, time.monotonic() - started))
        conn.close()
        with lock:
            samples.extend(local)

    threads = [threading.Thread(target=client, args=(i,), name=f"load-{i}") for i in range(clients)]
    watcher = threading.Thread(target=sampler, name="load-memory", daemon=True)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join(sample_s * 2)
    return LoadResult(time.monotonic() - started, clients, samples, dict(memory))
