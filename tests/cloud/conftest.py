"""One local cloud for the module's tests: the example config deployed onto the embedded AWS, for real.

The config is a copy of ``models.yaml`` (artifact paths made absolute) in a temporary directory, so tests
can change it and redeploy as a user edits theirs. A simulated minute lasts 0.3 s: the example's canary
(10 %, 5 minutes) takes 1.5 s.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mdk.local.cloud.cloud import ACCESS_KEY, SECRET_KEY, LocalCloud

REPO = Path(__file__).resolve().parents[2]
MINUTE_S = 0.3


@dataclass
class Config:
    path: Path
    text: str  # the original, absolute paths

    def write(self, text: str | None = None) -> None:
        self.path.write_text(self.text if text is None else text)

    def iris_artifact(self, artifact: Path) -> None:
        self.write(self.text.replace(str(REPO / "models/iris/v1/model.onnx"), str(artifact)))


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    directory = tmp_path_factory.mktemp("cloud-config")
    text = (REPO / "models.yaml").read_text().replace("models/", f"{REPO}/models/")
    result = Config(directory / "models.yaml", text)
    result.write()
    return result


@pytest.fixture(scope="module")
def cloud(config: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    local = LocalCloud(config=config.path, work=tmp_path_factory.mktemp("cloud-work"), minute_s=MINUTE_S)
    local.start()
    try:
        local.deploy()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def alerts(cloud: LocalCloud) -> Any:
    """An SQS queue subscribed to the stack's alarm topic: what an on-call engineer would receive."""
    sqs, sns = cloud.session.client("sqs"), cloud.session.client("sns")
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = next(v for k, v in cloud.ready.stacks[0].outputs.items() if k.startswith("AlarmTopicArn"))  # type: ignore[union-attr]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def received(timeout: float = 30) -> list[dict[str, Any]]:
        deadline, messages = time.monotonic() + timeout, list[dict[str, Any]]()
        while time.monotonic() < deadline and not messages:
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                messages.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return messages

    def about(text: str, timeout: float = 30) -> list[dict[str, Any]]:
        """The alerts whose message mentions ``text``, waiting for at least one (others are dropped)."""
        deadline, found = time.monotonic() + timeout, list[dict[str, Any]]()
        while time.monotonic() < deadline and not found:
            found = [m for m in received(timeout=1) if text in m["Message"]]
        return found

    def alarmed(name: str, timeout: float = 60) -> list[dict[str, Any]]:
        """CloudWatch's notifications of alarm ``name`` going into ALARM, waiting for at least one."""
        notes = [json.loads(m["Message"]) for m in about(f'"AlarmName": "{name}"', timeout)]
        return [n for n in notes if n["NewStateValue"] == "ALARM"]

    received.about = about  # type: ignore[attr-defined]
    received.alarmed = alarmed  # type: ignore[attr-defined]
    return received


def signed(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    secret: str = SECRET_KEY,
    region: str = "us-east-1",
) -> tuple[int, dict[str, str], bytes]:
    """A SigV4-signed call (execute-api) with the local credentials, as `mdk predict` or curl sign it."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(ACCESS_KEY, secret), "execute-api", region).add_auth(request)
    prepared = request.prepare()
    return call(prepared.url, method=method, body=body, headers=dict(prepared.headers))


def call(
    url: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def body_json(raw: bytes) -> Any:
    return json.loads(raw)
