"""`make up` as a new user runs it: `mdk local up` reaches "ready", the printed examples work as printed
(pasted into a shell in the repository), and Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.conftest import REPO


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment mentions ``text`` (ours: same user)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if text.encode() in blob and state != "Z":
            found.append(int(entry.name))
    return found


def wait_ready(process: subprocess.Popen[Any], out: Path) -> str:
    """What ``mdk local up`` printed until it said it is ready (it must neither exit nor take 240 s)."""
    deadline = time.monotonic() + 240
    while "ready; Ctrl-C stops every process" not in (text := out.read_text()):
        assert process.poll() is None, f"mdk local up exited with {process.returncode}:\n{text}"
        assert time.monotonic() < deadline, f"not ready within 240 s:\n{text}"
        time.sleep(0.5)
    return text


def test_make_up_reaches_ready_and_its_printed_examples_work(tmp_path: Path) -> None:
    work = tmp_path / "local"
    command = [sys.executable, "-m", "mdk", "local", "up", "--api-port", "0", "--aws-port", "0", "--no-watch"]
    command += ["--work", str(work)]
    env = {**os.environ, "COLUMNS": "400"}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name, None)
    with (tmp_path / "up.out").open("w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, text=True
        )
    try:
        text = wait_ready(process, tmp_path / "up.out")
        lines = text.splitlines()
        start = lines.index("Try, from another shell in this directory:") + 1
        examples = []
        for line in lines[start:]:
            if not line.startswith("  "):
                break
            examples.append(line.strip())
        assert [e.split()[0] for e in examples] == [
            "curl",
            "curl",
            "export",
            ".venv/bin/aws",
            ".venv/bin/mdk",
            ".venv/bin/mdk",
        ]
        script = "set -e\n" + "\n".join(f"echo '>>> {i}'\n{example}" for i, example in enumerate(examples))
        script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")  # this run's interpreter
        done = subprocess.run(
            ["bash", "-c", script],
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        outputs = done.stdout.split(">>> ")[1:]
        iris = json.loads(outputs[0].split("\n", 1)[1])
        assert [p["label"] for p in iris["predictions"]] == ["virginica", "virginica"]
        digits = json.loads(outputs[1].split("\n", 1)[1])
        assert len(digits["predictions"]) == 2
        assert "upload:" in outputs[3]
        assert "iris" in outputs[4]  # the run just submitted (any state)
        assert "iris (lambda" in outputs[5]
        assert "digits (sagemaker" in outputs[5]
        assert processes_mentioning(str(work))  # the emulators and the serving containers
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    text = (tmp_path / "up.out").read_text()
    assert text.rstrip().endswith("stopped"), text[-2000:]
    deadline = time.monotonic() + 10
    while (left := processes_mentioning(str(work))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"still running after Ctrl-C: {left}"


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm-then-sigkill", "sigkill"])
def test_stopped_by_a_supervisor_it_leaves_no_process_of_the_kit(
    tmp_path: Path, first: signal.Signals
) -> None:
    """Issue 13, defect 16: stopped as a supervisor stops a service (SIGTERM, then SIGKILL 2 s later), or
    killed outright, `mdk local up` leaves no emulator, runtime or serving container running."""
    work = tmp_path / "local"
    command = [sys.executable, "-m", "mdk", "local", "up", "--api-port", "0", "--aws-port", "0", "--no-watch"]
    command += ["--work", str(work), "--warm", "all"]  # models start on first use: start them all now
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "AWS_PROFILE")}
    with (tmp_path / "up.out").open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(process, tmp_path / "up.out")
        started = processes_mentioning(str(work))
        assert started  # the emulators and the serving containers
    finally:
        process.send_signal(first)
        try:
            process.wait(2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 10
    while (left := processes_mentioning(str(work))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"still running after SIGTERM and SIGKILL: {left}"
