"""The local EventBridge Scheduler's timer (mdk/local/cloud/services/scheduler.py) on moto's Scheduler
API and a hand-moved clock: rate schedules fire every N local minutes with their Input as the event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mdk.local.cloud.services.scheduler import LocalScheduler, rate_minutes, target_event

ARN = "arn:aws:lambda:us-east-1:123456789012:function:monitor"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("scheduler")


def _create(client: Any, name: str, expression: str, state: str = "ENABLED") -> None:
    client.create_schedule(
        Name=name,
        ScheduleExpression=expression,
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": ARN,
            "RoleArn": "arn:aws:iam::123456789012:role/r",
            "Input": json.dumps({"model": name}),
        },
        State=state,
    )


def test_rate_expressions() -> None:
    assert rate_minutes("rate(15 minutes)") == 15
    assert rate_minutes("rate(1 minute)") == 1
    assert rate_minutes("rate(2 hours)") == 120
    assert rate_minutes("cron(0 * * * ? *)") is None


def test_the_input_is_the_event() -> None:
    assert target_event({"Input": '{"model": "iris"}'}) == {"model": "iris"}
    assert target_event({}) == {}


def test_rate_schedules_fire_every_n_local_minutes(client: Any) -> None:
    _create(client, "every-5", "rate(5 minutes)")
    _create(client, "every-2", "rate(2 minutes)")
    _create(client, "off", "rate(1 minute)", state="DISABLED")
    fired: list[tuple[str, dict[str, Any]]] = []
    clock = Clock()
    scheduler = LocalScheduler(client, fire=lambda a, e: fired.append((a, e)), minute_s=2.0, clock=clock)
    scheduler._start = lambda: None  # type: ignore[method-assign]  # steps driven by the test's clock
    assert scheduler.sync() == ["every-2", "every-5"]
    assert scheduler.due() == []
    clock.now += 4.0  # two local minutes
    assert [s.name for s in scheduler.due()] == ["every-2"]
    clock.now += 6.0  # five local minutes since the deploy
    assert sorted(s.name for s in scheduler.due()) == ["every-2", "every-5"]
    assert scheduler.due() == []
    clock.now += 100.0  # a stalled timer fires once, not for every missed period
    assert len(scheduler.due()) == 2
    scheduler.fire_now("every-5")
    assert fired == [(ARN, {"model": "every-5"})]


def test_a_redeploy_keeps_the_period_running(client: Any) -> None:
    _create(client, "job", "rate(5 minutes)")
    clock = Clock()
    scheduler = LocalScheduler(client, fire=lambda a, e: None, minute_s=1.0, clock=clock)
    scheduler._start = lambda: None  # type: ignore[method-assign]
    scheduler.sync()
    clock.now += 3.0
    scheduler.sync()
    clock.now += 2.0
    assert [s.name for s in scheduler.due()] == ["job"]


def test_fire_now_names_the_deployed_schedules(client: Any) -> None:
    _create(client, "job", "rate(5 minutes)")
    scheduler = LocalScheduler(client, fire=lambda a, e: None, minute_s=1.0, clock=Clock())
    scheduler._start = lambda: None  # type: ignore[method-assign]
    scheduler.sync()
    with pytest.raises(KeyError, match="deployed: job"):
        scheduler.fire_now("other")
