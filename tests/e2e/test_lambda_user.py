"""The local runner runs functions as Lambda runs them (issue 13): an unprivileged user, a read-only task root,
a /tmp of its own, Lambda's environment, the 6 MB limits, a dead sandbox replaced, boto3 in the base image.

Everything runs under the real emulator (aws-lambda-rie) with the real runtime client. The suite runs as
root (here and in CI), so the runner drops to Lambda's sandbox uid: the checks on the user, the read-only
task root and the 0600 files are what a non-root Lambda user sees.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mdk.bundle import IMAGE_MODEL_DIR, write_image_context
from mdk.config import KitConfig
from mdk.images import LAMBDA, Copy, Recipe, StagedImage, stage
from mdk.images.kit import LAMBDA_BASE
from mdk.local.cloud.services.lambda_ import (
    RESPONSE_LIMIT,
    SYNC_REQUEST_LIMIT,
    FunctionCode,
    FunctionRunner,
    InvokeRefused,
)
from mdk.local.rie import SANDBOX_GID, SANDBOX_UID, InvocationError, LambdaProcess
from tests.events import api_event, response_json

REPO = Path(__file__).resolve().parents[2]
LAYERS = REPO / ".cache" / "layers"

pytestmark = pytest.mark.e2e

RECIPE = Recipe(
    name="probe",
    base=LAMBDA_BASE,
    steps=(Copy(("probe.py",), "${LAMBDA_TASK_ROOT}/"),),
    cmd=("probe.handler",),
)

PROBE = """\
import importlib.util
import os
import tempfile
import time


def _writable(directory):
    try:
        with open(os.path.join(directory, "written-by-the-function"), "w") as fh:
            fh.write("x")
    except OSError as exc:
        return type(exc).__name__
    return "written"


def handler(event, context):
    if "answer_bytes" in event:
        return "A" * (event["answer_bytes"] - 2)  # a JSON string: two quotes more
    if "sleep" in event:
        time.sleep(event["sleep"])
    boto3 = importlib.util.find_spec("boto3")
    tmp = tempfile.gettempdir()
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "pid": os.getpid(),
        "task_root_write": _writable(os.environ["LAMBDA_TASK_ROOT"]),
        "tmp": tmp,
        "tmp_write": _writable(tmp),
        "tmp_owner": os.stat(tmp).st_uid,
        "env": dict(os.environ),
        "boto3": boto3.origin if boto3 else None,
        "size": len(event.get("pad", "")),
    }
"""


@pytest.fixture(scope="module")
def probe_image(tmp_path_factory: pytest.TempPathFactory) -> StagedImage:
    root = tmp_path_factory.mktemp("probe")
    context = root / "context"
    context.mkdir()
    (context / "probe.py").write_text(PROBE)
    # An image asset's context carries its recipe's rendering, as `cdk synth` writes it.
    (context / "Dockerfile").write_text(RECIPE.render())
    return stage(RECIPE, context, root / "stage", {}, cache_dir=LAYERS)


@pytest.fixture(scope="module")
def probe(probe_image: StagedImage, rie_binary: Path) -> Iterator[LambdaProcess]:
    with LambdaProcess(
        probe_image, rie_binary, function_name="mdk-probe", memory_mb=256, ephemeral_storage_mb=1024
    ) as process:
        yield process


def test_the_function_runs_as_an_unprivileged_user_with_a_read_only_task_root(probe: LambdaProcess) -> None:
    seen = probe.invoke({})
    assert os.geteuid() == 0, "the suite runs as root: the runner must drop to Lambda's user"
    assert (seen["uid"], seen["gid"], seen["groups"]) == (SANDBOX_UID, SANDBOX_GID, [])
    assert seen["task_root_write"] == "PermissionError"  # /var/task is read-only in Lambda
    assert seen["tmp_write"] == "written"
    assert seen["tmp_owner"] == SANDBOX_UID
    assert seen["tmp"] == str(probe.tmp)
    assert seen["tmp"] != "/tmp"  # a /tmp of this sandbox alone
    assert probe.tmp_usage_bytes() == 1


def test_the_function_sees_lambdas_environment(probe: LambdaProcess, probe_image: StagedImage) -> None:
    env = probe.invoke({})["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "mdk-probe"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/mdk-probe"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"].endswith(tuple("0123456789abcdef"))
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["LAMBDA_TASK_ROOT"] == str(probe_image.task_root)
    assert env["LAMBDA_RUNTIME_DIR"] == str(probe_image.runtime_dir)
    assert (env["TZ"], env["LANG"]) == (":UTC", "en_US.UTF-8")
    lang = Path(probe.python).parent.parent
    assert env["PATH"].split(":")[0] == str(lang / "bin")
    assert env["LD_LIBRARY_PATH"].split(":")[:3] == [str(lang / "lib"), "/lib64", "/usr/lib64"]
    assert str(probe_image.task_root) in env["LD_LIBRARY_PATH"].split(":")
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["MDK_LOCAL_EPHEMERAL_STORAGE_MB"] == "1024"
    assert "HOME" not in env
    assert "VIRTUAL_ENV" not in env


def test_the_base_image_carries_boto3_in_the_runtime_dir(
    probe: LambdaProcess, probe_image: StagedImage
) -> None:
    origin = probe.invoke({})["boto3"]
    assert origin is not None, "public.ecr.aws/lambda/python ships boto3: the staged image must too"
    assert Path(origin).is_relative_to(probe_image.runtime_dir)  # the base image's, not the function's
    assert not (probe_image.task_root / "boto3").exists()


# --------------------------------------------------------------------------- defect 1: 0600 build contexts


@pytest.fixture(scope="module")
def iris_context(kit_config: KitConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_context(kit_config.model("iris"), tmp_path_factory.mktemp("iris") / "context")


def stage_iris(context: Path, stage_dir: Path) -> StagedImage:
    return stage(LAMBDA, context, stage_dir, {"MODEL_DIR": IMAGE_MODEL_DIR}, cache_dir=LAYERS)


def test_an_image_built_from_0600_files_fails_init_as_lambdas_user(
    iris_context: Path, tmp_path: Path, rie_binary: Path
) -> None:
    """What the kit wrote before the fix (every context file through mkstemp: 0600) cannot init."""
    old = tmp_path / "old-context"
    old.mkdir()
    for source in sorted(iris_context.rglob("*")):
        target = old / source.relative_to(iris_context)
        if source.is_dir():
            target.mkdir()
        else:
            target.write_bytes(source.read_bytes())
            target.chmod(0o600)
    image = stage_iris(old, tmp_path / "stage")
    with (
        LambdaProcess(image, rie_binary, function_name="mdk-dev-iris", memory_mb=1024) as function,
        pytest.raises(InvocationError) as failed,
    ):
        function.invoke(api_event("v1", "GET", "/models/iris/health"))
    assert failed.value.status == 502
    assert b"Runtime.ImportModuleError" in failed.value.body or b"Permission denied" in failed.value.body


def test_the_kits_image_inits_and_serves_as_lambdas_user(
    iris_context: Path, tmp_path: Path, rie_binary: Path
) -> None:
    image = stage_iris(iris_context, tmp_path / "stage")
    with LambdaProcess(image, rie_binary, function_name="mdk-dev-iris", memory_mb=1024) as function:
        health = function.invoke(api_event("v1", "GET", "/models/iris/health"))
        body = json.dumps({"instances": [[6.3, 3.4, 5.6, 2.4]]})
        predicted = function.invoke(api_event("v1", body=body))
    assert health["statusCode"] == 200, health
    assert [p["label"] for p in response_json(predicted)["predictions"]] == ["virginica"]


# ------------------------------------------------------------------- the runner: limits, dead sandboxes


class _Lambda:
    """The two control-plane calls the runner makes of the local AWS, answered for one function."""

    def get_function_configuration(self, FunctionName: str, Qualifier: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"MemorySize": 256, "Timeout": 60, "EphemeralStorage": {"Size": 2048}, "Environment": {}}

    def get_alias(self, **_: Any) -> dict[str, Any]:
        raise AssertionError("no alias in these tests")


class _Metrics:
    def put(self, namespace: str, datum: dict[str, Any]) -> None:
        pass


@pytest.fixture
def runner(probe_image: StagedImage, tmp_path: Path, rie_binary: Path) -> Iterator[FunctionRunner]:
    context = probe_image.root.parent / "context"
    runner = FunctionRunner(
        work=tmp_path / "work",
        rie=rie_binary,
        lambda_client=_Lambda(),
        metrics=_Metrics(),  # type: ignore[arg-type]
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        layer_cache=LAYERS,
    )
    runner.code[("probe", "$LATEST")] = FunctionCode(
        key="probe", kind="image", context=context, recipe=RECIPE
    )
    try:
        yield runner
    finally:
        runner.stop()


def invocations_started(runner: FunctionRunner) -> int:
    return sum(p.log_text().count("START RequestId:") for p in runner.processes().values())


def test_a_request_over_6_mb_is_refused_before_the_function_runs(runner: FunctionRunner) -> None:
    first = runner.invoke("probe", None, json.dumps({"pad": ""}).encode())
    assert not first.errored
    started = invocations_started(runner)
    fits = json.dumps({"pad": ""}).encode()
    pad = "x" * (SYNC_REQUEST_LIMIT - len(fits))
    assert json.loads(runner.invoke("probe", None, json.dumps({"pad": pad}).encode()).payload)["size"] == len(
        pad
    )
    with pytest.raises(InvokeRefused) as refused:
        runner.invoke("probe", None, json.dumps({"pad": pad + "x"}).encode())
    assert (refused.value.status, refused.value.error_type) == (413, "RequestEntityTooLargeException")
    assert f"{SYNC_REQUEST_LIMIT + 1} byte payload is too large" in refused.value.message
    assert invocations_started(runner) == started + 1  # the refused one never reached the function


def test_a_response_over_6_mb_fails_the_invocation_and_is_not_delivered(runner: FunctionRunner) -> None:
    at_limit = runner.invoke("probe", None, json.dumps({"answer_bytes": RESPONSE_LIMIT}).encode())
    assert (at_limit.status, at_limit.errored, len(at_limit.payload)) == (200, False, RESPONSE_LIMIT)
    over = runner.invoke("probe", None, json.dumps({"answer_bytes": RESPONSE_LIMIT + 1}).encode())
    assert (over.status, over.errored) == (200, True)  # a function error, as Invoke reports it
    assert json.loads(over.payload) == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
    }
    after = runner.invoke("probe", None, b"{}")
    assert not after.errored


def test_a_killed_sandbox_is_replaced_and_the_invocation_in_flight_fails(runner: FunctionRunner) -> None:
    first = json.loads(runner.invoke("probe", None, b"{}").payload)
    emulator = runner.processes()[("probe", "$LATEST")]

    # Killed while idle: the next invocation is a cold start in a new sandbox.
    os.kill(emulator.pid, signal.SIGKILL)
    while emulator.alive():
        time.sleep(0.01)
    second = runner.invoke("probe", None, b"{}")
    assert not second.errored, second.payload
    replaced = runner.processes()[("probe", "$LATEST")]
    assert replaced is not emulator
    assert json.loads(second.payload)["pid"] != first["pid"]

    # Killed under an invocation: that one fails as Lambda reports a runtime exit; the next one works.
    in_flight: list[Any] = []
    caller = threading.Thread(
        target=lambda: in_flight.append(runner.invoke("probe", None, json.dumps({"sleep": 30}).encode()))
    )
    caller.start()
    while replaced.log_text().count("START RequestId:") < 2:  # the sleeping invocation has started
        time.sleep(0.02)
    os.kill(replaced.pid, signal.SIGKILL)
    caller.join(60)
    assert not caller.is_alive()
    failed = in_flight[0]
    assert (failed.status, failed.errored) == (200, True)
    error = json.loads(failed.payload)
    assert error["errorType"] == "Runtime.ExitError"
    assert "signal: killed" in error["errorMessage"]
    third = runner.invoke("probe", None, b"{}")
    assert not third.errored, third.payload
    assert runner.processes()[("probe", "$LATEST")] is not replaced
