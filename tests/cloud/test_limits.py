"""Limits on the local cloud: a model too slow for some requests under a 3-second function timeout, and
a stage throttled to 5 requests a second (burst 10).

The iris model with a busy loop that spins for hours when a feature is far above anything real
(``tests.onnx_models.slowed``): its example and ordinary requests answer at once, so it deploys like any
model. A slow request must end as the kit's own 504 before Lambda's timeout (not the platform's bare 502
for a killed sandbox), fire the model's timeout alarm to the alert topic, and leave the function serving.
Requests past the stage's throttling get API Gateway's 429 in the kit's error shape, nothing else.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest

from mdk.local.cloud.cloud import LocalCloud
from tests.cloud.conftest import REPO, Config, signed
from tests.onnx_models import slowed

ALARM = "mdk-dev-iris-model-timeouts-Critical"
SLOW_ROW = [1000.0, 3.4, 5.6, 2.4]  # a 1,000 cm sepal: the loop would run 9e8 times
ROW = [6.3, 3.4, 5.6, 2.4]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    directory = tmp_path_factory.mktemp("cloud-config-slow")
    slow = slowed(REPO / "models/iris/v1/model.onnx", directory / "slow-iris.onnx")
    text = (
        (REPO / "models.yaml")
        .read_text()
        .replace("models/", f"{REPO}/models/")
        .replace(f"{REPO}/models/iris/v1/model.onnx", str(slow))
        .replace("timeout_s: 10", "timeout_s: 3")
        .replace(
            "default_model: iris\n", "default_model: iris\napi:\n  throttle_rate: 5\n  throttle_burst: 10\n"
        )
    )
    assert str(slow) in text
    assert "timeout_s: 3" in text
    assert "throttle_rate: 5" in text
    result = Config(directory / "models.yaml", text)
    result.write()
    return result


def predict(cloud: LocalCloud, row: list[float]) -> tuple[int, dict[str, Any]]:
    status, _, raw = signed(
        f"{cloud.gateway.url}models/iris/predict",
        method="POST",
        body=json.dumps({"instances": [row]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return status, json.loads(raw)


def test_a_request_past_the_deadline_gets_a_clean_504_and_the_timeout_alarm_fires(
    cloud: LocalCloud, alerts: Any
) -> None:
    status, body = predict(cloud, ROW)
    assert (status, body["predictions"][0]["label"]) == (200, "virginica")
    cloudwatch = cloud.session.client("cloudwatch")
    assert cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"], "the stack defines the alarm"

    status, body = predict(cloud, SLOW_ROW)
    # The function's own answer (its error shape and code), not API Gateway's 502 for a killed sandbox
    # or its 504 for an integration that never answered.
    assert status == 504
    assert body["error"]["code"] == "inference_timeout"
    assert "deadline" in body["error"]["message"]

    status, body = predict(cloud, ROW)  # the function goes on serving
    assert (status, body["predictions"][0]["label"]) == (200, "virginica")

    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["StateValue"]
        if state == "ALARM":
            break
        time.sleep(0.3)
    assert state == "ALARM"
    fired = alerts.alarmed(ALARM)  # what the on-call engineer receives
    assert fired
    assert "504 inference_timeout" in fired[0]["AlarmDescription"]


def test_requests_past_the_stage_throttling_get_429_in_the_kits_error_shape(cloud: LocalCloud) -> None:
    """40 health checks at once against a burst of 10: some are refused with API Gateway's THROTTLED
    response (the stack's template: code "throttled"), the others answered; no other status, no 5xx."""
    time.sleep(2.5)  # a full bucket (5 a second, 10 at most) whatever the tests before used
    url = f"{cloud.gateway.url}models/iris/health"
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def one() -> None:
        status, _, raw = signed(url)
        with lock:
            results.append((status, raw))

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = Counter(status for status, _ in results)
    assert set(statuses) == {200, 429}, statuses
    assert 10 <= statuses[200] < 40
    for status, raw in results:
        if status == 429:
            assert json.loads(raw) == {"error": {"code": "throttled", "message": "Too Many Requests"}}

    time.sleep(1.0)  # the bucket refills: callers that back off get answers again
    status, _, _ = signed(url)
    assert status == 200
