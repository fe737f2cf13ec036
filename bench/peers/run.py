"""The kit's SageMaker serving container, BentoML and LitServe in one run, driven by wrk.

Per model (bench.models.LAYERS, ~1M parameters, and LAYERS_LARGE, ~21M), two rounds in turn (kit, BentoML,
LitServe, kit, BentoML, LitServe; one in ``--quick``): each server is started alone, waited for, its answers
for a few rows checked against raw onnxruntime's, warmed up, then loaded by wrk at 1, 8 and 32 connections
(one row per request, in the server's own JSON form); after it stops, raw ``session.run`` is timed at the
batch size its batching reached (rounded, >= 1), one thread, the same session options: so each ratio is of
two figures taken minutes apart at most, on the same machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import models as bench_models
from bench.peers import wrk

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BENCH_VENV = REPO / ".cache" / "bench-venv"
SERVERS = ("kit", "bentoml", "litserve")
CONNECTIONS = (1, 8, 32)
MODELS = {"mlp-1m": bench_models.LAYERS, "mlp-21m": bench_models.LAYERS_LARGE}
MAX_BATCH = 32
DELAY_MS = 2
BENTOML_MAX_LATENCY_MS = 10_000
CHECK_ROWS = 4
ATOL = 1e-5
RTOL = 1e-4


class PeerError(RuntimeError):
    """A server's figures cannot be taken (it did not start, answered wrongly, or wrk saw errors)."""


@dataclass(frozen=True)
class Server:
    """How to start one server and talk to it."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    ready_path: str
    predict_path: str
    body: Callable[[list[float]], Any]  # one row -> the JSON document the server takes
    answer: Callable[[Any], list[float]]  # the server's JSON answer -> the row's output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def providers(device: str) -> list[str]:
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "gpu" else ["CPUExecutionProvider"]


def session(model: Path, device: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), options, providers=providers(device))
    if device == "gpu" and sess.get_providers()[0] != "CUDAExecutionProvider":
        raise PeerError(f"--device gpu: onnxruntime has no CUDA provider here ({sess.get_providers()})")
    return sess


def cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def raw_rows_per_s(sess: Any, row: list[float], batch: int, *, seconds: float) -> float:
    """Rows per second of ``session.run`` on a prepared ``batch`` x features array."""
    feeds = {sess.get_inputs()[0].name: np.tile(np.asarray([row], dtype=np.float32), (batch, 1))}
    for _ in range(10):
        sess.run(None, feeds)
    runs = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        sess.run(None, feeds)
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def _kit_answer(doc: Any) -> list[float]:
    prediction = doc["predictions"][0]
    if isinstance(prediction, dict):  # a labelled classifier row: {"label": ..., "<scores key>": {...}}
        scores = next(v for v in prediction.values() if isinstance(v, (dict, list)))
        return list(scores.values()) if isinstance(scores, dict) else list(scores)
    return list(prediction)


def _flat(doc: Any) -> list[float]:
    array = np.asarray(doc, dtype=np.float64)
    return [float(x) for x in array.reshape(-1)]


def servers(
    bundle: Path, model: Path, stats: Path, port: int, *, device: str, python: dict[str, str]
) -> dict[str, Server]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MDK_", "PEER_"))}
    base["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    kit_env = {
        **base,
        "MDK_MODEL_DIR": str(bundle),
        "MDK_HOST": "127.0.0.1",
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "MDK_DEVICE": device,
        "MDK_ORT_THREADS": "1",
        "MDK_MAX_BATCH_SIZE": str(MAX_BATCH),
        "MDK_MAX_BATCH_DELAY_MS": str(DELAY_MS),
    }
    if device == "gpu":  # the GPU venv has the kit's server deps but not the kit installed: as the Dockerfile
        kit_env["PYTHONPATH"] = os.pathsep.join([str(REPO / "layers" / "python"), str(REPO)])
    peer_env = {**base, "BENTOML_DO_NOT_TRACK": "true", "PEER_MODEL": str(model), "PEER_STATS": str(stats),
                "PEER_DEVICE": device, "PEER_MAX_LATENCY_MS": str(BENTOML_MAX_LATENCY_MS)}  # fmt: skip
    bentoml = str(Path(python["peers"]).parent / "bentoml")
    return {
        "kit": Server(
            "kit", [python["kit"], "-m", "sagemaker_endpoints.serve", "serve"], kit_env, REPO, "/ping",
            "/invocations", lambda row: {"instances": [row]}, _kit_answer,
        ),
        "bentoml": Server(
            "bentoml",
            [bentoml, "serve", "bento_service:Mlp", "--working-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port)],
            peer_env, HERE, "/readyz", "/predict", lambda row: {"features": [row]}, lambda doc: _flat(doc)[:],
        ),
        "litserve": Server(
            "litserve", [python["peers"], str(HERE / "litserve_server.py"), str(model), str(port), str(stats), device],
            peer_env, HERE, "/health", "/predict", lambda row: {"input": row}, lambda doc: _flat(doc["output"]),
        ),
    }  # fmt: skip


def _request(url: str, body: Any | None = None, *, timeout: float = 10.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def started(server: Server, port: int, log: Path, *, timeout_s: float = 180.0) -> Iterator[str]:
    """The server running alone, ready (its readiness route answers 200), stopped afterwards."""
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(server.command, env=server.env, cwd=server.cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise PeerError(f"{server.name} exited {proc.returncode} while starting: {_tail(log)}")
            with contextlib.suppress(OSError):
                if _request(url + server.ready_path, timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise PeerError(f"{server.name} was not ready within {timeout_s:g} s: {_tail(log)}")
            time.sleep(0.1)
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (BentoML and LitServe fork workers), SIGKILL if it lingers."""
    import signal

    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # workers left behind by a parent that exited first
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(log: Path, n: int = 1500) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text[-n:].strip() or "(no output)"


def check(server: Server, url: str, sess: Any, rows: np.ndarray) -> float:
    """Each row's answer against raw onnxruntime's (batch of one); the largest difference, or PeerError."""
    expected = sess.run(None, {sess.get_inputs()[0].name: rows})[0]
    worst = 0.0
    for i, row in enumerate(rows.tolist()):
        status, payload = _request(url + server.predict_path, server.body(row))
        if status != 200:
            raise PeerError(f"{server.name} answered {status} to a correct request: {payload[:300]!r}")
        got = np.asarray(server.answer(json.loads(payload)), dtype=np.float64)
        if got.shape != expected[i].shape or not np.allclose(got, expected[i], atol=ATOL, rtol=RTOL):
            raise PeerError(
                f"{server.name}'s answer for row {i} differs from raw onnxruntime's: got {got[:4].tolist()}..., "
                f"expected {expected[i][:4].tolist()}... (atol {ATOL}, rtol {RTOL})"
            )
        worst = max(worst, float(np.max(np.abs(got - expected[i]))))
    return worst


def counts(server: Server, url: str, stats: Path) -> tuple[int, int]:
    """(batches, rows) so far: the kit's /stats route, the peers' counter file."""
    if server.name == "kit":
        doc = json.loads(_request(url + "/stats")[1])
        return int(doc["batches"]), int(doc["rows"])
    batches, rows = stats.read_text().split()
    return int(batches), int(rows)


@contextlib.contextmanager
def held(lock: Path | None) -> Iterator[None]:
    """An exclusive flock on ``lock`` (when given) for the block: other timed work waits meanwhile."""
    if lock is None:
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def bundle_for(name: str, layers: tuple[int, ...], root: Path) -> tuple[Path, Path]:
    """The model's bundle for the kit (model.onnx + mdk-model.json) and its .onnx file, for all three."""
    from mdk_runtime.spec import ModelSpec, file_sha256

    directory = root / f"bench-{name}"
    artifact = bench_models.write(directory / "model.onnx", layers)
    digest = file_sha256(artifact)
    spec = ModelSpec(name=name, version=digest[:12], sha256=digest)
    (directory / "mdk-model.json").write_text(json.dumps(spec.to_json()))
    return directory, artifact


def pythons(device: str) -> dict[str, str]:
    """The interpreters: on CPU the kit from the repo's .venv, the peers from .cache/bench-venv; on GPU both
    from the GPU venv this driver runs in (``make bench-gpu``)."""
    if device == "gpu":
        return {"kit": sys.executable, "peers": sys.executable}
    kit = REPO / ".venv" / "bin" / "python"
    peers = BENCH_VENV / "bin" / "python"
    if not peers.exists():
        raise PeerError(f"{peers} is missing: `make bench` builds it (requirements-bench.txt)")
    return {"kit": str(kit if kit.exists() else sys.executable), "peers": str(peers)}


def _one_server(
    server: Server, port: int, stats: Path, log: Path, sess: Any, row: list[float], check_rows: np.ndarray,
    *, seconds: float, lua_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    lua = lua_dir / f"{server.name}.lua"
    lua.write_text(wrk.script(json.dumps(server.body(row))))
    runs: dict[str, Any] = {}
    with started(server, port, log) as url:
        worst = check(server, url, sess, check_rows)
        target = url + server.predict_path
        wrk.run(target, lua, connections=MAX_BATCH, seconds=1)  # warm-up (BentoML trains its dispatcher here)
        for connections in CONNECTIONS:
            before = counts(server, url, stats)
            try:
                result = wrk.run(target, lua, connections=connections, seconds=seconds)
            except wrk.WrkError as exc:  # what one such request gets, to say why
                status, payload = _request(target, server.body(row))
                raise wrk.WrkError(f"{exc}\n(one request now: HTTP {status} {payload[:300]!r})") from exc
            after = counts(server, url, stats)
            batches, rows = after[0] - before[0], after[1] - before[1]
            runs[str(connections)] = {
                **result.to_json(),
                "rows_per_s": round(result.requests_per_s, 1),
                "effective_batch": round(rows / batches, 2) if batches else 0.0,
            }
    return {"max_abs_diff": worst, "runs": runs}


def measure(
    *, quick: bool, device: str = "cpu", lock: Path | None = None, log_dir: Path | None = None
) -> dict[str, Any]:
    """Every figure of the comparison, JSON-serialisable (see report_lines for the table it makes).

    ``lock``: a file to flock around each model's round (so a long run lets other timed work in between);
    leave it None when the caller already holds the benchmark lock. A server that fails (start, answers,
    wrk errors) has ``error`` set and no figures for that model; ``errors`` lists them all.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device: expected cpu or gpu, got {device!r}")
    if device == "gpu" and not cuda_available():
        raise PeerError("--device gpu: this onnxruntime has no CUDAExecutionProvider (run `make bench-gpu`)")
    wrk.binary()
    seconds = 2.0 if quick else 6.0
    rounds = 1 if quick else 2
    raw_seconds = 0.5 if quick else 1.0
    python = pythons(device)
    results: dict[str, Any] = {
        "device": device,
        "quick": quick,
        "wrk": f"wrk -t1 -c<N> -d{seconds:g}s --latency -s <lua>",
        "wrk_seconds": seconds,
        "rounds": rounds,
        "connections": list(CONNECTIONS),
        "max_batch_size": MAX_BATCH,
        "batch_delay_ms": DELAY_MS,
        "bentoml_max_latency_ms": BENTOML_MAX_LATENCY_MS,
        "bodies": {
            "kit": '{"instances": [[f0, ..., fN]]}',
            "bentoml": '{"features": [[f0, ..., fN]]}',
            "litserve": '{"input": [f0, ..., fN]}',
        },
        "models": {},
        "errors": [],
    }
    with tempfile.TemporaryDirectory(prefix="mdk-peers-") as tmp_dir:
        tmp = Path(tmp_dir)
        logs = log_dir or tmp
        logs.mkdir(parents=True, exist_ok=True)
        for name, layers in MODELS.items():
            bundle, artifact = bundle_for(name, layers, tmp)
            sess = session(artifact, device)
            rng = np.random.default_rng(0)
            row = rng.uniform(0, 1, layers[0]).round(4).tolist()
            check_rows = rng.uniform(0, 1, (CHECK_ROWS, layers[0])).round(4).astype(np.float32)
            entry: dict[str, Any] = {
                "layers": list(layers),
                "parameters": bench_models.parameters(bench_models.mlp(layers=layers)),
                "servers": {s: {"error": None, "rounds": []} for s in SERVERS},
            }
            results["models"][name] = entry
            for round_no in range(rounds):
                with held(lock):
                    raw_cache: dict[int, float] = {}
                    for server_name in SERVERS:
                        mine = entry["servers"][server_name]
                        if mine["error"] is not None:
                            continue
                        port = free_port()
                        stats = tmp / f"{server_name}.stats"
                        server = servers(bundle, artifact, stats, port, device=device, python=python)[
                            server_name
                        ]
                        log = logs / f"{name}-{server_name}-{round_no + 1}.log"
                        print(f"peers: {name}, round {round_no + 1}, {server_name} ...", file=sys.stderr)
                        try:
                            measured = _one_server(
                                server, port, stats, log, sess, row, check_rows, seconds=seconds, lua_dir=tmp
                            )
                        except (PeerError, wrk.WrkError) as exc:
                            message = f"{name}, {server_name}: {exc}"
                            print(f"peers: ERROR {message}", file=sys.stderr)
                            mine["error"] = message
                            mine["rounds"] = []
                            results["errors"].append(message)
                            continue
                        for run in measured["runs"].values():
                            batch = max(1, round(run["effective_batch"]))
                            if batch not in raw_cache:
                                raw_cache[batch] = raw_rows_per_s(sess, row, batch, seconds=raw_seconds)
                            run["raw_batch"] = batch
                            run["raw_rows_per_s"] = round(raw_cache[batch], 1)
                            run["ratio_to_raw"] = round(run["rows_per_s"] / raw_cache[batch], 3)
                        mine["max_abs_diff"] = measured["max_abs_diff"]
                        mine["rounds"].append(measured["runs"])
            entry["summary"] = summarize(entry["servers"])
    return results


def _span(values: list[float], digits: int = 3) -> list[float]:
    return [round(min(values), digits), round(max(values), digits)]


def summarize(by_server: dict[str, Any]) -> dict[str, Any]:
    """Per server and connection count: [min, max] over the rounds of every figure; and kit / each peer,
    round by round (round i's kit over round i's peer), as [min, max]."""
    out: dict[str, Any] = {}
    for server, data in by_server.items():
        if data["error"] is not None or not data["rounds"]:
            continue
        out[server] = {}
        for connections in data["rounds"][0]:
            runs = [r[connections] for r in data["rounds"]]
            out[server][connections] = {
                key: _span([float(r[key]) for r in runs], 3 if key == "ratio_to_raw" else 2)
                for key in (
                    "rows_per_s",
                    "p50_ms",
                    "p99_ms",
                    "effective_batch",
                    "raw_rows_per_s",
                    "ratio_to_raw",
                )
            }
    if "kit" in out:
        for peer in ("bentoml", "litserve"):
            if peer not in out:
                continue
            for connections, kit_figures in out["kit"].items():
                kit_rounds = [r[connections]["rows_per_s"] for r in by_server["kit"]["rounds"]]
                peer_rounds = [r[connections]["rows_per_s"] for r in by_server[peer]["rounds"]]
                kit_figures[f"kit_over_{peer}"] = _span(
                    [k / p for k, p in zip(kit_rounds, peer_rounds, strict=False) if p], 2
                )
    return out
