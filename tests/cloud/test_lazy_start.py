"""The local cloud starts a model's sandbox (its Lambda version's emulator) or its endpoint's serving
container when the model is first used, not at deploy: memory grows with the models in use, not the models
listed. Three models deployed (two Lambda, one SageMaker); nothing of theirs runs before a request; a request
starts exactly the model it reaches, through the local API Gateway or a direct Invoke / InvokeEndpoint;
``warm`` starts what it is asked to. Memory figures are ``make bench``'s (bench/scale.py), not assertions."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mdk.config import load_config
from mdk.local.cloud.cli import start_note
from mdk.local.cloud.cloud import LocalCloud
from tests.cloud.conftest import MINUTE_S, REPO, signed
from tests.cloud.test_make_up import wait_ready

COPY = "iris-copy"  # a second Lambda model: a copy of the example's


@pytest.fixture(scope="module")
def three_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models.yaml with absolute paths and a copy of its Lambda model: iris, digits and iris-copy."""
    document = yaml.safe_load((REPO / "models.yaml").read_text())
    for model in document["models"]:
        for key in ("artifact", "example"):
            if isinstance(model.get(key), str):
                model[key] = str(REPO / model[key])
    iris = next(m for m in document["models"] if m["name"] == "iris")
    document["models"].append({**json.loads(json.dumps(iris)), "name": COPY})
    path = tmp_path_factory.mktemp("lazy-config") / "models.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cloud(three_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    local = LocalCloud(config=three_models, work=tmp_path_factory.mktemp("lazy-work"), minute_s=MINUTE_S)
    local.start()
    try:
        local.deploy()
        yield local
    finally:
        local.stop()


def started(cloud: LocalCloud) -> set[str]:
    """The models whose sandbox or serving container runs now."""
    assert cloud.ready is not None
    by_function = {
        m.lambda_.function_name: name for name, m in cloud.ready.models.items() if m.lambda_ is not None
    }
    models = {
        by_function.get(function, f"not a model: {function}") for function, _ in cloud.runner.processes()
    }
    endpoint_models = {c.model for c in cloud.containers.running()}
    by_sagemaker_model = {}
    for name, model in cloud.ready.models.items():
        if model.sagemaker is not None:
            _, models_of_variants = cloud.endpoints.variants(model.sagemaker.endpoint_name)
            by_sagemaker_model.update(dict.fromkeys(models_of_variants.values(), name))
    return models | {by_sagemaker_model.get(m, f"not a model: {m}") for m in endpoint_models}


def predict(cloud: LocalCloud, model: str) -> int:
    example = json.loads((REPO / "models" / model.removesuffix("-copy") / "v1" / "example.json").read_text())
    status, _, raw = signed(
        f"{cloud.gateway.url}models/{model}/predict",
        method="POST",
        body=json.dumps(example).encode(),
        headers={"content-type": "application/json"},
    )
    assert status == 200, raw
    return status


def test_no_sandbox_or_container_runs_before_a_request(cloud: LocalCloud) -> None:
    assert cloud.ready is not None
    assert set(cloud.ready.models) == {"iris", "digits", COPY}
    assert cloud.runner.processes() == {}
    assert cloud.containers.running() == []


def test_warm_starts_what_it_is_asked_and_says_what_starts_on_first_use(
    cloud: LocalCloud, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="no model 'nope' is deployed"):
        cloud.warm(["nope"])
    assert started(cloud) == set()
    with caplog.at_level(logging.INFO, logger="mdk.local"):
        assert cloud.warm([COPY]) == [COPY]
    assert started(cloud) == {COPY}
    assert f"started {COPY}; iris, digits start on first use" in caplog.messages


def test_a_request_through_the_gateway_starts_exactly_that_model(cloud: LocalCloud) -> None:
    before = set(cloud.runner.processes())
    assert "iris" not in started(cloud)
    predict(cloud, "iris")  # the first request pays the start, and succeeds
    assert started(cloud) == {COPY, "iris"}
    after = set(cloud.runner.processes())
    predict(cloud, "iris")
    assert set(cloud.runner.processes()) == after  # the same sandbox serves the next request
    assert len(after - before) == 1  # one version's sandbox: the alias's
    assert cloud.containers.running() == []


def test_a_direct_invoke_endpoint_starts_the_endpoint_it_names(cloud: LocalCloud) -> None:
    assert cloud.ready is not None
    digits = cloud.ready.models["digits"].sagemaker
    assert digits is not None
    assert "digits" not in started(cloud)
    example = (REPO / "models/digits/v1/example.json").read_bytes()
    answer = cloud.session.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=digits.endpoint_name, Body=example, ContentType="application/json"
    )
    assert "predictions" in json.loads(answer["Body"].read())
    assert started(cloud) == {COPY, "iris", "digits"}
    assert len(cloud.containers.running()) == 1


def test_the_printout_names_what_started_and_what_starts_on_first_use(three_models: Path) -> None:
    kit = load_config(three_models)
    assert start_note(kit, [COPY]) == f"{COPY} started; iris, digits start on first use"
    assert start_note(kit, []) == (
        f"iris, digits, {COPY} start on first use (the first request pays the start; --warm NAME starts "
        "one at deploy)"
    )


def descendants(root: int) -> set[int]:
    """Every live process under ``root`` (its children, theirs, ...), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), [root]
    while frontier:
        parent = frontier.pop()
        children = {pid for pid, ppid in parents.items() if ppid == parent and pid not in found}
        found |= children
        frontier.extend(children)
    return found


def test_mdk_local_up_starts_no_model_until_its_first_request(three_models: Path, tmp_path: Path) -> None:
    """`make up` used to start every model's sandbox and container before saying ready: with 20 models,
    20 emulators and every endpoint's container. Now nothing runs under it until a model is called."""
    command = [sys.executable, "-m", "mdk", "local", "up", "--config", str(three_models), "--no-watch"]
    command += ["--api-port", "0", "--aws-port", "0", "--work", str(tmp_path / "local")]
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "AWS_PROFILE")}
    with (tmp_path / "up.out").open("w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**env, "COLUMNS": "400"}
        )
    try:
        text = wait_ready(process, tmp_path / "up.out")
        assert f"models:     iris, digits, {COPY} start on first use" in text
        assert descendants(process.pid) == set()
        api = re.search(r"API:\s+(\S+)", text)
        assert api is not None, text
        example = (REPO / "models/iris/v1/example.json").read_bytes()
        status, _, raw = signed(
            f"{api.group(1).rstrip('/')}/models/iris/predict",
            method="POST",
            body=example,
            headers={"content-type": "application/json"},
        )
        assert status == 200, raw
        assert descendants(process.pid)  # iris's emulator and its runtime
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
