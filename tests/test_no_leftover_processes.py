"""Issue 13, defect 16: every process the kit starts ends with its parent, however the parent ends.

A child interpreter starts what the local cloud starts (a Lambda emulator with its runtime, a SageMaker
serving container, one of them from a thread that ends at once, as a gateway request thread does), and
is then SIGKILLed: no cleanup code of it runs, and the parent-death signal alone must end them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, threading, time
from pathlib import Path

from mdk.bundle import write_bundle
from mdk.config import load_config
from mdk.images import Copy, Recipe, stage
from mdk.local.rie import LambdaProcess, ensure_rie, session_members
from mdk.local.transform import container

work = Path(sys.argv[1])
repo = Path(sys.argv[2])
(work / "context").mkdir()
(work / "context" / "app.py").write_text("def handler(event, context):\\n    return {}\\n")
recipe = Recipe(
    name="child",
    base="public.ecr.aws/lambda/python:3.12",
    steps=(Copy(("app.py",), "${LAMBDA_TASK_ROOT}/"),),
    cmd=("app.handler",),
)
image = stage(recipe, work / "context", work / "stage", {}, cache_dir=repo / ".cache" / "layers")
function = LambdaProcess(image, ensure_rie(repo / ".cache"), log_path=work / "rie.log")
started = {}


def start_function():  # from a thread that ends right away, as a local gateway request thread does
    function.start()
    function.wait_ready()
    function.invoke({})  # the runtime process exists now too
    started["lambda"] = session_members(function.pid)


thread = threading.Thread(target=start_function)
thread.start()
thread.join()
bundle = write_bundle(load_config(repo / "models.yaml").model("iris"), work / "bundle")
with container(bundle) as (url, process):
    print(json.dumps({"lambda": started["lambda"], "container": process.pid}), flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.e2e
def test_what_a_sigkilled_process_started_dies_with_it(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(REPO)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            child.wait()
            pytest.fail(f"the child failed: {child.stderr.read() if child.stderr else ''}")
        started = json.loads(line)
        pids = [*started["lambda"], started["container"]]
        assert len(started["lambda"]) == 2  # the emulator and the function's runtime
        assert all(alive(pid) for pid in pids)  # the starting thread has ended: they live on
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    deadline = time.monotonic() + 30
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"still running after their parent was SIGKILLed: {left}"


LEAKY_TEST = """
from mdk.local.processes import spawn

leaked = []


def test_leaks_a_process():
    leaked.append(spawn(["sleep", "300"]))  # never stopped
"""


def test_the_suite_fails_when_a_test_leaves_a_process_behind(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "processes left behind by the suite" in run.stdout
    assert "sleep 300" in run.stdout
