"""The local cloud's Lambda behaves as Lambda does where the kit relies on it (issue 13).

Defect 12: the live version's shadow mirror (lambda_handlers/shadow.py) reads its setting through
Powertools Parameters and sends its batches with boto3, both of which need the boto3 that Lambda's base
image carries. Without it locally, shadowing was silently off. Here the mirror is switched on as
``mdk shadow start`` switches it (the SSM parameter), and the candidate is really invoked, asynchronously.
Defect 11 through the deployed stack: the live sandbox is killed, and the next request cold-starts a new one.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from mdk.local.cloud.cloud import LocalCloud
from mdk.local.cloud.services.lambda_ import Invocation
from mdk.registry import shadow_parameter
from tests.cloud.conftest import signed

IRIS = {"instances": [[6.3, 3.4, 5.6, 2.4], [5.0, 3.4, 1.5, 0.2]]}


def predict(cloud: LocalCloud) -> tuple[int, bytes]:
    status, _, body = signed(
        f"{cloud.gateway.url}models/iris/predict",
        method="POST",
        body=json.dumps(IRIS).encode(),
        headers={"content-type": "application/json"},
    )
    return status, body


def live_sandbox(cloud: LocalCloud) -> tuple[str, str, Any]:
    running = [(f, v, p) for (f, v), p in cloud.runner.processes().items() if "iris" in f and v != "$LATEST"]
    assert len(running) == 1, running
    return running[0]


def test_a_killed_live_sandbox_is_replaced_and_the_shadow_mirror_reaches_its_candidate(
    cloud: LocalCloud,
) -> None:
    status, body = predict(cloud)
    assert status == 200, body
    function, _live, emulator = live_sandbox(cloud)

    seen: list[tuple[str, str]] = []

    def observe(result: Invocation, _alias: str | None) -> None:
        seen.append((result.function, result.version))

    cloud.runner.observers.append(observe)
    try:
        ssm = cloud.session.client("ssm")
        name = shadow_parameter(cloud._project(), cloud.stage, "iris")
        ssm.put_parameter(
            Name=name,
            Value=json.dumps({"candidate": "$LATEST", "sample": 1.0}),
            Type="String",
            Overwrite=True,
        )
        # The live sandbox caches the setting for 30 s; a new sandbox reads it at once. Killing the emulator
        # is what a crashed execution environment looks like: the next request must get a new one.
        os.kill(emulator.pid, signal.SIGKILL)
        while emulator.alive():
            time.sleep(0.01)
        status, body = predict(cloud)
        assert status == 200, body
        assert [p["label"] for p in json.loads(body)["predictions"]] == ["virginica", "setosa"]
        replaced = live_sandbox(cloud)[2]
        assert replaced is not emulator
        assert replaced.alive()

        deadline = time.monotonic() + 60
        while (function, "$LATEST") not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (function, "$LATEST") in seen, f"the mirror never invoked the candidate: {seen}"
        assert "shadow setting" not in replaced.log_text()  # the setting was readable (boto3 is there)
    finally:
        cloud.runner.observers.remove(observe)
        cloud.session.client("ssm").delete_parameter(
            Name=shadow_parameter(cloud._project(), cloud.stage, "iris")
        )
