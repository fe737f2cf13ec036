"""Real SageMaker clients, unchanged, against the local cloud's endpoint (the example's digits model):
boto3's ``sagemaker-runtime.invoke_endpoint`` with JSON, CSV and ``.npy``, the AWS CLI, and the SageMaker
Python SDK v3 (its own venv, ``make sdk``) calling the endpoint and running a transform job. Plus
InvokeEndpoint's contract: SageMaker's error shapes, the 6 MB limit, and DescribeEndpoint's shape."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import onnxruntime as ort
import pytest
from botocore.exceptions import ClientError

from mdk.local.cloud.cloud import ACCESS_KEY, SECRET_KEY, LocalCloud
from tests.cloud.conftest import REPO

ENDPOINT = "mdk-dev-digits"
EXAMPLE = json.loads((REPO / "models/digits/v1/example.json").read_text())["instances"]
SDK_PYTHON = REPO / ".cache" / "sdk-venv" / "bin" / "python"


def client_env(cloud: LocalCloud) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": cloud.aws_endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": cloud.region,
        "AWS_REGION": cloud.region,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="module")
def runtime(cloud: LocalCloud) -> Iterator[Any]:
    """A plain boto3 client, configured as a user's would be (endpoint URL, the local credentials)."""
    client = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=cloud.region
    ).client("sagemaker-runtime", endpoint_url=cloud.aws_endpoint)
    yield client
    client.close()


def model_labels(rows: list[list[float]]) -> list[str]:
    """What the model itself answers (onnxruntime on the artifact): the label of each row."""
    session = ort.InferenceSession(
        str(REPO / "models/digits/v1/model.onnx"), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    labels = session.run(None, {name: np.asarray(rows, dtype=np.float32)})[0]
    return [str(int(label)) for label in labels]


def test_boto3_invoke_endpoint_answers_json_csv_and_npy_as_the_model(runtime: Any) -> None:
    expected = model_labels(EXAMPLE)
    answer = runtime.invoke_endpoint(
        EndpointName=ENDPOINT,
        Body=json.dumps({"instances": EXAMPLE}),
        ContentType="application/json",
        Accept="application/json",
    )
    assert answer["InvokedProductionVariant"] == "primary"
    assert answer["ContentType"].startswith("application/json")
    assert [p["label"] for p in json.loads(answer["Body"].read())["predictions"]] == expected

    csv = "\n".join(",".join(str(v) for v in row) for row in EXAMPLE) + "\n"
    answer = runtime.invoke_endpoint(
        EndpointName=ENDPOINT, Body=csv, ContentType="text/csv", Accept="text/csv"
    )
    assert answer["ContentType"].startswith("text/csv")
    lines = answer["Body"].read().decode().splitlines()
    assert [line.split(",")[0] for line in lines] == expected

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(EXAMPLE, dtype=np.float32), allow_pickle=False)
    answer = runtime.invoke_endpoint(
        EndpointName=ENDPOINT,
        Body=buffer.getvalue(),
        ContentType="application/x-npy",
        Accept="application/json",
    )
    tensors = json.loads(answer["Body"].read())
    assert [tensors["labels"][i] for i in tensors["outputs"]["label"]] == expected


def test_the_containers_4xx_is_sagemakers_model_error_with_the_original_status(runtime: Any) -> None:
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(
            EndpointName=ENDPOINT, Body=b'{"instances": "x"}', ContentType="application/json"
        )
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert json.loads(error["OriginalMessage"])["error"]["code"] == "malformed_request"
    assert error["Error"]["Message"].startswith("Received client error (400) from primary")


def test_invoke_endpoint_refuses_what_sagemaker_refuses(runtime: Any, cloud: LocalCloud) -> None:
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(
            EndpointName=ENDPOINT, Body=b"1," * (3 * 1024 * 1024 + 1), ContentType="text/csv"
        )
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "6 MB" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"{}", ContentType="application/json")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(
            EndpointName=ENDPOINT, Body=b"{}", ContentType="application/json", TargetVariant="nope"
        )
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    answer = runtime.invoke_endpoint(
        EndpointName=ENDPOINT,
        Body=json.dumps({"instances": EXAMPLE[:1]}),
        ContentType="application/json",
        TargetVariant="primary",
        CustomAttributes="trace=1",
    )
    assert answer["InvokedProductionVariant"] == "primary"
    assert json.loads(answer["Body"].read())["predictions"][0]["label"] == model_labels(EXAMPLE[:1])[0]


def test_describe_calls_answer_as_aws_without_empty_structures(cloud: LocalCloud) -> None:
    sagemaker = cloud.session.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    for described in (endpoint, config, model):
        assert "DataCaptureConfig" not in described
        assert "VpcConfig" not in described


def test_the_aws_cli_invokes_the_endpoint(cloud: LocalCloud, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"instances": EXAMPLE}))
    out = tmp_path / "out.json"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("aws")),
            "sagemaker-runtime",
            "invoke-endpoint",
            "--endpoint-url",
            cloud.aws_endpoint,
            "--endpoint-name",
            ENDPOINT,
            "--content-type",
            "application/json",
            "--body",
            f"fileb://{body}",
            str(out),
        ],
        env=client_env(cloud),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["InvokedProductionVariant"] == "primary"
    assert [p["label"] for p in json.loads(out.read_text())["predictions"]] == model_labels(EXAMPLE)


def test_the_sagemaker_sdk_v3_invokes_the_endpoint_and_runs_a_transform_job(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    assert SDK_PYTHON.exists(), "the SageMaker SDK's venv is missing: run `make sdk` (make test does)"
    assert cloud.ready is not None
    assert cloud.ready.bucket
    bucket = cloud.ready.bucket
    s3 = cloud.session.client("s3")
    rows = EXAMPLE[:3]
    s3.put_object(
        Bucket=bucket,
        Key="sdk/input/rows.jsonl",
        Body=("\n".join(json.dumps(r) for r in rows) + "\n").encode(),
    )
    sagemaker = cloud.session.client("sagemaker")
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    )
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"instances": EXAMPLE}))
    done = subprocess.run(
        [
            str(SDK_PYTHON),
            str(Path(__file__).with_name("clients") / "sagemaker_sdk.py"),
            ENDPOINT,
            str(body),
            config["ProductionVariants"][0]["ModelName"],
            f"s3://{bucket}/sdk/input/",
            f"s3://{bucket}/sdk/output/",
        ],
        env=client_env(cloud),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "InService"
    assert result["variant"] == "primary"
    assert [p["label"] for p in result["body"]["predictions"]] == model_labels(EXAMPLE)
    assert result["job_status"] == "Completed"
    output = s3.get_object(Bucket=bucket, Key="sdk/output/rows.jsonl.out")["Body"].read().decode()
    assert [json.loads(line)["label"] for line in output.splitlines()] == model_labels(rows)
