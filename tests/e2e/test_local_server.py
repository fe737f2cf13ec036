"""`mdk serve` (what `make up` runs): ready banner, the printed curl example works as printed, Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.e2e
def test_serve_prints_a_working_example_and_stops_on_ctrl_c() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdk", "serve", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                break
        assert lines, "mdk serve printed nothing"
        assert lines[-1].startswith("ready"), "\n".join(lines)
        curl = next(line for line in lines if line.startswith("curl -s -X POST"))
        assert f"http://127.0.0.1:{port}/models/iris/predict" in curl
        result = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30, check=True)
        predictions = json.loads(result.stdout)["predictions"]
        assert [p["label"] for p in predictions] == ["virginica", "virginica"]
        health = subprocess.run(
            ["bash", "-c", next(line.split(": ", 1)[1] for line in lines if "health:" in line)],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert json.loads(health.stdout)["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            rest, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, rest
    assert "stopped" in rest
    assert "Traceback" not in rest
