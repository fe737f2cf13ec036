"""mdk predict (signed calls to the API) and mdk batch submit/status (the inbox and the manifests),
against the moto server; the batch functions that react to the upload are the real handlers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from lambda_handlers import batch_aws, batch_status, batch_trigger
from mdk.bundle import batch_topology
from mdk.config import load_config
from mdk.registry import Deployed, model_parameter
from mdk_runtime import batch
from mdk_runtime.service import InferenceService
from tests.events import FakeLambdaContext, s3_object_created, transform_state_change
from tests.ops.conftest import BUCKET, PROJECT, REPO, STAGE, Topology


class _Api(BaseHTTPRequestHandler):
    """The deployed API as the CLI sees it: answers with the real iris service, records the request."""

    service: ClassVar[InferenceService | None] = None
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        type(self).seen.append({"path": self.path, "headers": headers, "body": body})
        assert self.service is not None
        reply = self.service.predict(body, self.headers.get("Content-Type"), self.headers.get("Accept"))
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api(topology: Topology, iris_service: InferenceService) -> Iterator[list[dict[str, Any]]]:
    _Api.service, _Api.seen = iris_service, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    registered(topology, api_url=f"http://127.0.0.1:{server.server_address[1]}/{STAGE}/")
    yield _Api.seen
    server.shutdown()
    server.server_close()


def registered(topology: Topology, **changes: Any) -> None:
    """Rewrite iris's registry entry (as a redeploy with other settings would)."""
    name = model_parameter(PROJECT, STAGE, "iris")
    ssm = topology.client("ssm")
    entry = Deployed.parse(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    for key, value in changes.items():
        setattr(entry, key, value)
    ssm.put_parameter(Name=name, Value=json.dumps(entry.to_json()), Type="String", Overwrite=True)


def test_predict_signs_the_call_with_sigv4(api: list[dict[str, Any]], mdk: Any, tmp_path: Path) -> None:
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"instances": [[6.3, 3.4, 5.6, 2.4]]}))

    result = mdk("predict", "iris", "--data", str(request))

    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["label"] == "virginica"
    [seen] = api
    assert seen["path"] == f"/{STAGE}/models/iris/predict"
    auth = seen["headers"]["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/execute-api/aws4_request" in auth
    assert "x-amz-date" in seen["headers"]
    assert seen["body"] == request.read_bytes()


def test_predict_with_api_keys_and_client_errors(api: list[dict[str, Any]], topology: Topology, mdk: Any,
                                                 tmp_path: Path) -> None:  # fmt: skip
    registered(topology, api_auth="api_key")
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"instances": [[1.0, 2.0]]}))
    missing = mdk("predict", "iris", "--data", str(request))
    assert missing.code == 2
    assert "pass --api-key" in missing.stderr

    refused = mdk("predict", "iris", "--data", str(request), "--api-key", "k-123")
    assert refused.code == 1
    assert "HTTP 422" in refused.stderr
    assert "expected each instance of shape [4]" in refused.stderr
    assert api[-1]["headers"]["x-api-key"] == "k-123"
    assert "authorization" not in api[-1]["headers"]
    unreadable = mdk("predict", "iris", "--data", str(tmp_path / "nope.json"))
    assert unreadable.code == 2
    assert "--data: cannot read" in unreadable.stderr


# -- batch -------------------------------------------------------------------------------------------------


@pytest.fixture
def batch_functions(topology: Topology, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    """The trigger and status functions' settings and tables, on the moto server; iris's registry entry
    with its batch member, as its stack writes it (its transform jobs run the SageMaker model
    ``digits-primary`` of the topology: moto runs no job)."""
    dynamodb = topology.client("dynamodb")
    dynamodb.create_table(
        TableName="idempotency",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    topic = topology.client("sns").create_topic(Name="alerts")["TopicArn"]
    registered(
        topology, batch=batch_topology(load_config(REPO / "models.yaml").model("iris"), "digits-primary")
    )
    for name, value in {
        batch.DEPLOYMENT_ENV: f"{PROJECT}-{STAGE}",
        batch.REGISTRY_ENV: model_parameter(PROJECT, STAGE, ""),
        "MDK_BATCH_BUCKET": BUCKET,
        "MDK_IDEMPOTENCY_TABLE": "idempotency",
        "MDK_ALERT_TOPIC_ARN": topic,
    }.items():
        monkeypatch.setenv(name, value)
    batch_aws.reset()
    batch_trigger._start_once.cache_clear()
    batch_status._finish_once.cache_clear()
    yield topology
    batch_aws.reset()
    batch_trigger._start_once.cache_clear()
    batch_status._finish_once.cache_clear()


def run_pipeline(topology: Topology, key: str, answers: list[bytes]) -> dict[str, Any]:
    """What AWS does after an upload: the event, the trigger, the job's output, the status function."""
    s3 = topology.client("s3")
    deadline = time.monotonic() + 30
    while True:
        versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", [])
        if versions or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    [version] = versions
    event = s3_object_created(
        BUCKET,
        key,
        version_id=version["VersionId"],
        sequencer="00" + version["VersionId"][:14],
        size=version["Size"],
    )
    started: dict[str, Any] = batch_trigger.handler(event, FakeLambdaContext())
    job = topology.client("sagemaker").describe_transform_job(TransformJobName=started["job"])
    output = job["TransformOutput"]["S3OutputPath"]
    out_key = output.split(f"{BUCKET}/", 1)[1] + key.rsplit("/", 1)[-1] + ".out"
    s3.put_object(Bucket=BUCKET, Key=out_key, Body=b"\n".join(answers) + b"\n")
    batch_status.handler(
        transform_state_change(started["job"], "Completed", output_path=output), FakeLambdaContext()
    )
    return started


def test_batch_submit_follows_the_run_to_its_manifest(
    batch_functions: Topology, mdk: Any, tmp_path: Path
) -> None:
    data = tmp_path / "day.jsonl"
    data.write_text("[5.1, 3.5, 1.4, 0.2]\n[6.7, 3.0, 5.2, 2.3]\n")
    results: list[Any] = []
    cli = threading.Thread(
        target=lambda: results.append(mdk("batch", "submit", "iris", str(data), "--timeout", "60"))
    )
    cli.start()
    started = run_pipeline(
        batch_functions, "incoming/iris/day.jsonl", [b'{"label":"setosa"}', b'{"label":"virginica"}']
    )
    cli.join(timeout=90)

    [result] = results
    assert result.code == 0, result.stderr
    assert f"uploaded s3://{BUCKET}/incoming/iris/day.jsonl" in result.stdout
    assert f"Completed {started['run_id']}: 2 lines scored" in result.stdout
    assert f"manifest: s3://{BUCKET}/results/iris/{started['run_id']}/_status.json" in result.stdout

    listing = mdk("batch", "status", "--model", "iris")
    assert listing.code == 0
    assert started["run_id"] in listing.stdout
    one = mdk("batch", "status", started["run_id"], "--model", "iris", "--json")
    assert one.json()["output"]["lines"] == 2
    missing = mdk("batch", "status", "20260101T000000Z-000000000000", "--model", "iris")
    assert missing.code == 2
    assert "no run '20260101T000000Z-000000000000' of model iris" in missing.stderr


def test_batch_submit_refusals(batch_functions: Topology, mdk: Any, tmp_path: Path) -> None:
    text = tmp_path / "day.txt"
    text.write_text("1,2,3,4\n")
    wrong = mdk("batch", "submit", "iris", str(text))
    assert wrong.code == 2
    assert "FILE: expected a file ending in .csv, .jsonl, .ndjson" in wrong.stderr
    assert "not found" in mdk("batch", "submit", "iris", str(tmp_path / "nope.jsonl")).stderr
    rejected = tmp_path / "empty.jsonl"
    rejected.write_text("")
    results: list[Any] = []
    cli = threading.Thread(
        target=lambda: results.append(mdk("batch", "submit", "iris", str(rejected), "--timeout", "60"))
    )
    cli.start()
    s3 = batch_functions.client("s3")
    deadline = time.monotonic() + 30
    while not s3.list_object_versions(Bucket=BUCKET, Prefix="incoming/iris/empty.jsonl").get("Versions"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [version] = s3.list_object_versions(Bucket=BUCKET, Prefix="incoming/iris/empty.jsonl")["Versions"]
    event = s3_object_created(
        BUCKET, "incoming/iris/empty.jsonl", version_id=version["VersionId"], sequencer="01", size=0
    )
    batch_trigger.handler(event, FakeLambdaContext())
    cli.join(timeout=90)
    [result] = results
    assert result.code == 1
    assert "Rejected" in result.stdout
    assert "file: the file holds no records" in result.stdout
