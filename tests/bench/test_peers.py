"""bench/peers: wrk's Lua and report parsing, the correctness check, the summary and report, the GPU refusals.

No timing here: the figures are the benchmark's (``python -m bench.peers``), these check the plumbing.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import models as bench_models
from bench.peers import report, run, wrk

REPO = Path(__file__).resolve().parents[2]

WRK_OK = """Running 8s test @ http://127.0.0.1:8080/invocations
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.50ms  400.00us   1.20s    90.00%
    Req/Sec    12.00k     1.00k   14.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    2.60ms
     90%    2.80ms
     99%    1.05s
  96000 requests in 8.00s, 20.00MB read
Requests/sec:  12000.50
Transfer/sec:      2.50MB
"""


def test_parse_reads_rate_and_the_latency_distribution_in_its_units() -> None:
    result = wrk.parse(WRK_OK, connections=32)
    assert result.requests == 96000
    assert result.requests_per_s == 12000.5
    assert result.seconds == 8.0
    assert result.p50_ms == 0.812
    assert result.p90_ms == 2.8
    assert result.p99_ms == 1050.0
    assert result.max_ms == 1200.0
    assert result.connections == 32


def test_parse_fails_on_non_2xx_responses() -> None:
    bad = WRK_OK.replace("Requests/sec", "  Non-2xx or 3xx responses: 17\nRequests/sec")
    with pytest.raises(wrk.WrkError, match="17 responses were not 2xx"):
        wrk.parse(bad, connections=32)


@pytest.mark.parametrize(
    "errors", ["connect 1, read 0, write 0, timeout 0", "connect 0, read 0, write 0, timeout 3"]
)
def test_parse_fails_on_socket_errors(errors: str) -> None:
    bad = WRK_OK.replace("Requests/sec", f"  Socket errors: {errors}\nRequests/sec")
    with pytest.raises(wrk.WrkError, match="socket errors"):
        wrk.parse(bad, connections=32)


def test_parse_accepts_a_socket_errors_line_of_zeros_and_needs_the_distribution() -> None:
    zeros = WRK_OK.replace(
        "Requests/sec", "  Socket errors: connect 0, read 0, write 0, timeout 0\nRequests/sec"
    )
    assert wrk.parse(zeros, connections=1).requests == 96000
    without = "\n".join(line for line in WRK_OK.splitlines() if "%  " not in line or "Latency" in line)
    with pytest.raises(wrk.WrkError, match="latency distribution"):
        wrk.parse(without, connections=1)


def test_lua_long_string_level_avoids_the_body_s_closing_brackets() -> None:
    assert wrk.lua_string("abc") == "[[\nabc]]"
    body = '{"instances": [[1.0]]}'  # ends with "]]": level 0 would close early
    assert wrk.lua_string(body) == f"[=[\n{body}]=]"
    assert wrk.lua_string("x]]y]=]z") == "[==[\nx]]y]=]z]==]"
    script = wrk.script(body)
    assert 'wrk.headers["Content-Type"] = "application/json"' in script  # not t[[[...]]]: a call in Lua
    assert 'wrk.method = "POST"' in script
    assert wrk.lua_quoted('a"b\\c') == '"a\\034b\\092c"'


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, str | None, bytes]] = []  # noqa: RUF012
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Echo.seen.append((self.command, self.path, self.headers["Content-Type"], body))
        self.send_response(_Echo.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    _Echo.seen = []
    _Echo.status = 200
    server = HTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()
        server.server_close()


def test_wrk_sends_exactly_the_body_of_the_script(echo: str, tmp_path: Path) -> None:
    body = json.dumps({"instances": [[0.5, 1.25]]})
    lua = tmp_path / "body.lua"
    lua.write_text(wrk.script(body))
    result = wrk.run(echo, lua, connections=1, seconds=1)
    assert result.requests >= 1
    assert _Echo.seen[0] == ("POST", "/predict", "application/json", body.encode())
    assert {s[3] for s in _Echo.seen} == {body.encode()}


def test_wrk_run_fails_loudly_on_error_statuses(echo: str, tmp_path: Path) -> None:
    _Echo.status = 503
    lua = tmp_path / "body.lua"
    lua.write_text(wrk.script("{}"))
    with pytest.raises(wrk.WrkError, match="not 2xx"):
        wrk.run(echo, lua, connections=1, seconds=1)


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answer: Any = None

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        payload = json.dumps(_Answer.answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


def _server(name: str) -> run.Server:
    return run.Server(
        name, [], {}, REPO, "/ready", "/predict", lambda row: {"input": row}, lambda d: run._flat(d["output"])
    )


def test_check_accepts_the_raw_answer_and_refuses_a_wrong_one(tmp_path: Path) -> None:
    model = bench_models.write(tmp_path / "m.onnx", (4, 8, 3))
    sess = run.session(model, "cpu")
    rows = np.random.default_rng(1).uniform(0, 1, (1, 4)).astype(np.float32)
    expected = sess.run(None, {sess.get_inputs()[0].name: rows})[0][0]
    httpd = HTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        _Answer.answer = {"output": (expected + 1e-7).tolist()}
        assert run.check(_server("peer"), url, sess, rows) < 1e-6
        _Answer.answer = {"output": (expected + 1e-3).tolist()}
        with pytest.raises(run.PeerError, match="differs from raw onnxruntime"):
            run.check(_server("peer"), url, sess, rows)
        _Answer.answer = {"output": expected[:2].tolist()}  # a wrong shape
        with pytest.raises(run.PeerError, match="differs"):
            run.check(_server("peer"), url, sess, rows)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_each_server_gets_its_own_body_and_its_answer_is_read() -> None:
    made = run.servers(
        Path("b"),
        Path("m.onnx"),
        Path("s"),
        1234,
        device="cpu",
        python={"kit": "py", "peers": "/v/bin/python"},
    )
    assert made["kit"].body([1.0, 2.0]) == {"instances": [[1.0, 2.0]]}
    assert made["bentoml"].body([1.0, 2.0]) == {"features": [[1.0, 2.0]]}
    assert made["litserve"].body([1.0, 2.0]) == {"input": [1.0, 2.0]}
    assert made["kit"].answer({"predictions": [[0.25, 0.75]]}) == [0.25, 0.75]
    assert made["kit"].answer({"predictions": [{"label": 1, "scores": {"0": 0.25, "1": 0.75}}]}) == [
        0.25,
        0.75,
    ]
    assert made["bentoml"].answer([[0.25, 0.75]]) == [0.25, 0.75]
    assert made["litserve"].answer({"output": [0.25, 0.75]}) == [0.25, 0.75]
    assert made["kit"].env["MDK_MAX_BATCH_SIZE"] == "32"
    assert made["kit"].env["MDK_MAX_BATCH_DELAY_MS"] == "2"
    assert made["kit"].command[1:] == ["-m", "sagemaker_endpoints.serve", "serve"]
    assert made["bentoml"].command[0] == "/v/bin/bentoml"
    gpu = run.servers(
        Path("b"), Path("m.onnx"), Path("s"), 1, device="gpu", python={"kit": "g", "peers": "g"}
    )
    assert gpu["kit"].env["MDK_DEVICE"] == "gpu"
    assert gpu["kit"].env["PYTHONPATH"].split(os.pathsep) == [str(REPO / "layers" / "python"), str(REPO)]
    assert gpu["litserve"].command[-1] == "gpu"


def _run(rows_per_s: float, batch: float) -> dict[str, Any]:
    return {"rows_per_s": rows_per_s, "p50_ms": 1.0, "p99_ms": 2.0, "effective_batch": batch,
            "raw_rows_per_s": 1000.0, "ratio_to_raw": rows_per_s / 1000.0}  # fmt: skip


def _results() -> dict[str, Any]:
    by_server: dict[str, Any] = {
        "kit": {"error": None, "rounds": [{"1": _run(400, 1)}, {"1": _run(600, 1)}]},
        "bentoml": {"error": None, "rounds": [{"1": _run(200, 1)}, {"1": _run(100, 1)}]},
        "litserve": {"error": "mlp-1m, litserve: 3 responses were not 2xx/3xx:\nwrk output", "rounds": []},
    }
    return {
        "device": "cpu", "rounds": 2, "max_batch_size": 32, "batch_delay_ms": 2, "bentoml_max_latency_ms": 10000,
        "wrk": "wrk ...", "connections": [1], "bodies": {"kit": "k", "bentoml": "b", "litserve": "l"},
        "models": {"mlp-1m": {"parameters": 1000, "servers": by_server, "summary": run.summarize(by_server)}},
        "errors": [by_server["litserve"]["error"]],
    }  # fmt: skip


def test_summary_is_min_max_over_rounds_and_kit_over_peer_round_by_round() -> None:
    summary = _results()["models"]["mlp-1m"]["summary"]
    assert summary["kit"]["1"]["rows_per_s"] == [400.0, 600.0]
    assert summary["kit"]["1"]["kit_over_bentoml"] == [2.0, 6.0]  # 400/200 and 600/100
    assert "kit_over_litserve" not in summary["kit"]["1"]  # LitServe failed: no figures, no ratio
    assert "litserve" not in summary


def test_report_has_a_row_per_server_and_connection_and_shows_failures() -> None:
    lines = report.report_lines(_results())
    text = "\n".join(lines)
    assert "| kit container | 1 | 400-600 | 1.00 | 2.00 | 1.0 | 1,000 | 0.400-0.600 | 2.00-6.00x |  |" in text
    assert "| LitServe 0.2 | — | **FAILED**: mlp-1m, litserve: 3 responses were not 2xx/3xx: |" in text
    assert "wrk output" not in text  # the first line of an error only


def test_gpu_is_refused_where_onnxruntime_has_no_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.peers import __main__ as cli

    main = cli.main
    for module in (run, cli):  # as on a machine without CUDA, even on a GPU one
        monkeypatch.setattr(module, "cuda_available", lambda: False)
    assert main(["--device", "gpu", "--out", str(tmp_path)]) == 2
    assert "CUDA provider" in capsys.readouterr().err
    with pytest.raises(run.PeerError, match="CUDAExecutionProvider"):
        run.measure(quick=True, device="gpu")
    with pytest.raises(ValueError, match="cpu or gpu"):
        run.measure(quick=True, device="tpu")


def test_bench_gpu_script_refuses_without_a_gpu(tmp_path: Path) -> None:
    script = REPO / "bench" / "peers" / "gpu.sh"
    # Every tool of /usr/bin and /bin but nvidia-smi: a machine without the NVIDIA driver, even on a GPU one.
    tools = tmp_path / "tools"
    tools.mkdir()
    for directory in ("/usr/bin", "/bin"):
        for tool in Path(directory).iterdir():
            if tool.name != "nvidia-smi" and not (tools / tool.name).exists():
                (tools / tool.name).symlink_to(tool)
    bare_path = str(tools)
    env = {"PATH": bare_path, "HOME": str(tmp_path), "BENCH_GPU_VENV": str(tmp_path / "venv")}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "no nvidia-smi here" in done.stderr
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(
        "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver'\nexit 9\n"
    )
    (fake / "nvidia-smi").chmod(0o755)
    env["PATH"] = f"{fake}:{bare_path}"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "lists no GPU" in done.stderr
    assert not (tmp_path / "venv").exists()  # refused before building anything
