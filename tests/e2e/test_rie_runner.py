"""A staged image under the real Lambda Runtime Interface Emulator (mdk/local/rie.py).

The image is staged from a small recipe with the real runtime client (awslambdaric from PyPI, cached
in .cache/layers) and run by the aws-lambda-rie binary from the aws-sam-cli wheel.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from mdk.images import Arg, Copy, Env, Recipe, StagedImage, stage
from mdk.images.kit import LAMBDA_BASE
from mdk.local.rie import FunctionError, InvocationError, LambdaProcess, session_members

REPO = Path(__file__).resolve().parents[2]

RECIPE = Recipe(
    name="rie-runner",
    base=LAMBDA_BASE,
    steps=(
        Arg("GREETING", "hello"),
        Copy(("app.py", "broken.py", "raising.py"), "${LAMBDA_TASK_ROOT}/"),
        Env((("GREETING", "${GREETING}"),)),
    ),
    cmd=("app.handler",),
)

APP = """\
import importlib.util
import os
import sys

STARTED_PID = os.getpid()


def handler(event, context):
    return {
        "event": event,
        "greeting": os.environ["GREETING"],
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "cwd": os.getcwd(),
        "numpy_importable": importlib.util.find_spec("numpy") is not None,
        "pytest_importable": importlib.util.find_spec("pytest") is not None,
        "no_site": sys.flags.no_site,
        "function_name": context.function_name,
        "memory_limit_in_mb": int(context.memory_limit_in_mb),
        "region": os.environ.get("AWS_REGION"),
        "pid": os.getpid(),
        "pgid": os.getpgrp(),
        "sid": os.getsid(0),
        "started_pid": STARTED_PID,
    }
"""

BROKEN = """\
import numpy  # not in the image: the handler module cannot import


def handler(event, context):
    return {}
"""

RAISING = """\
def handler(event, context):
    raise ValueError("bad input: " + str(event.get("value")))
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> StagedImage:
    root = tmp_path_factory.mktemp("rie")
    context = root / "context"
    context.mkdir()
    (context / "app.py").write_text(APP)
    (context / "broken.py").write_text(BROKEN)
    (context / "raising.py").write_text(RAISING)
    return stage(
        RECIPE,
        context,
        root / "stage",
        {"GREETING": "hi"},
        cache_dir=REPO / ".cache" / "layers",
    )


def process_group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.e2e
def test_the_staged_function_runs_isolated_under_the_emulator(image: StagedImage, rie_binary: Path) -> None:
    process = LambdaProcess(image, rie_binary, function_name="mdk-e2e", memory_mb=1024, region="eu-west-1")
    with process:
        # The emulator starts the runtime lazily: before the first invocation it is alone in its session.
        assert session_members(process.pid) == [process.pid]

        first = process.invoke({"n": 1}, timeout=60)
        second = process.invoke({"n": 2}, timeout=60)

        runtime_pids = [pid for pid in session_members(process.pid) if pid != process.pid]
        init_ms = process.init_duration_ms()
        reports = process.reports()
        pgid = process.pgid

    assert first["event"] == {"n": 1}
    assert second["event"] == {"n": 2}
    assert first["greeting"] == "hi"
    assert first["task_root"] == str(image.task_root)
    assert first["cwd"] == str(image.task_root)
    assert first["numpy_importable"] is False  # installed in the dev venv, not in the image
    assert first["pytest_importable"] is False
    assert first["no_site"] == 1
    assert first["function_name"] == "mdk-e2e"
    assert first["memory_limit_in_mb"] == 1024
    assert first["region"] == "eu-west-1"
    # One warm runtime served both invocations; it runs in the emulator's session, in its own group.
    assert second["pid"] == first["pid"] == first["started_pid"]
    assert runtime_pids == [first["pid"]]
    assert first["sid"] == pgid
    assert first["pgid"] != pgid

    assert init_ms > 0
    assert process.first_response_s is not None
    assert len(reports) == 2
    assert reports[0].request_id != reports[1].request_id
    assert reports[0].init_duration_ms is not None  # printed on the first REPORT only
    assert reports[1].init_duration_ms is None
    assert reports[0].memory_size_mb == 1024

    # Stopped: the emulator's group, the runtime's group and the whole session are gone.
    assert not process_group_exists(pgid)
    assert not process_group_exists(first["pgid"])
    assert session_members(pgid) == []
    assert "INIT REPORT(durationMs:" in process.log_path.read_text()


@pytest.mark.e2e
def test_a_dependency_missing_from_the_image_fails_init(image: StagedImage, rie_binary: Path) -> None:
    broken = dataclasses.replace(image, cmd=["broken.handler"])
    with LambdaProcess(broken, rie_binary, log_path=image.root.parent / "broken.log") as process:
        with pytest.raises(InvocationError) as caught:
            process.invoke({}, timeout=60)
        init = process.init_reports()
    assert caught.value.status == 502
    assert b"Runtime.ImportModuleError" in caught.value.body
    assert b"No module named 'numpy'" in caught.value.body
    assert init[0].status == "error"
    assert session_members(process.pid) == []


@pytest.mark.e2e
def test_a_handler_exception_is_a_function_error(image: StagedImage, rie_binary: Path) -> None:
    raising = dataclasses.replace(image, cmd=["raising.handler"])
    log_path = image.root.parent / "raising.log"
    with (
        LambdaProcess(raising, rie_binary, log_path=log_path) as process,
        pytest.raises(FunctionError) as caught,
    ):
        process.invoke({"value": 7}, timeout=60)
    assert caught.value.error_type == "ValueError"
    assert caught.value.error_message == "bad input: 7"
    assert session_members(process.pid) == []
