"""The local EventBridge Scheduler: the schedules moto's CloudFormation skips, fired on the local clock.

A deploy creates each ``AWS::Scheduler::Schedule`` through moto's Scheduler API (moto stores schedules
but runs none, and its CloudFormation has no model of the type). :class:`LocalScheduler` then fires every
enabled ``rate(N minutes|hours|days)`` schedule every N compressed minutes (``LocalCloud.minute_s``, as
the canary's), sending the target its ``Input`` as the event, asynchronously (the local cloud's
EventBridge path: Lambda's retries, then the on-failure destination). Tests can fire one at once
(:meth:`LocalScheduler.fire_now`) instead of waiting for its period.

Schedule types and the target's input: https://docs.aws.amazon.com/scheduler/latest/UserGuide/
schedule-types.html (rate expressions), https://docs.aws.amazon.com/scheduler/latest/APIReference/
API_Target.html (``Input``: the text the target receives as its event).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mdk.local.cloud.registry import Completion, completes
from mdk.local.cloud.template import physical_name

log = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_MINUTES = {"minute": 1, "hour": 60, "day": 1440}
GROUP = "default"


def rate_minutes(expression: str) -> int | None:
    """The period of a ``rate(...)`` expression in minutes; None for cron/at expressions (not run)."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _MINUTES[match.group(2).rstrip("s")]


@completes("AWS::Scheduler::Schedule")
def schedule(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    name = str(props.get("Name") or physical_name(ctx.stack, logical))
    kwargs: dict[str, Any] = {
        "Name": name,
        "GroupName": str(props.get("GroupName") or GROUP),
        "ScheduleExpression": props["ScheduleExpression"],
        "FlexibleTimeWindow": props.get("FlexibleTimeWindow") or {"Mode": "OFF"},
        "Target": props["Target"],
        "State": props.get("State", "ENABLED"),
    }
    if "Description" in props:
        kwargs["Description"] = props["Description"]
    client = ctx.client("scheduler")
    try:
        client.create_schedule(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConflictException":
            raise
        client.update_schedule(**kwargs)


@dataclass
class Scheduled:
    name: str
    target: str
    event: dict[str, Any]
    period_s: float
    next_at: float


def target_event(target: dict[str, Any]) -> dict[str, Any]:
    """The event a target receives: its ``Input`` (JSON text), or an empty object."""
    raw = target.get("Input")
    if not raw:
        return {}
    try:
        event = json.loads(raw)
    except ValueError:
        return {"input": raw}
    return event if isinstance(event, dict) else {"input": event}


class LocalScheduler:
    """Fires the deployed rate schedules on the local clock; ``fire`` delivers ``(target arn, event)``."""

    def __init__(
        self,
        client: Any,
        *,
        fire: Callable[[str, dict[str, Any]], None],
        minute_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.fire = fire
        self.minute_s = minute_s
        self.clock = clock
        self.schedules: dict[str, Scheduled] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> list[str]:
        """Read the deployed schedules (after a deploy): new ones start their period now, removed or
        disabled ones stop. Returns the names of those that run."""
        found: dict[str, Scheduled] = {}
        now = self.clock()
        for page in self.client.get_paginator("list_schedules").paginate():
            for item in page.get("Schedules", []):
                detail = self.client.get_schedule(Name=item["Name"], GroupName=item.get("GroupName", GROUP))
                minutes = rate_minutes(str(detail.get("ScheduleExpression", "")))
                if detail.get("State", "ENABLED") != "ENABLED" or minutes is None:
                    continue
                period = minutes * self.minute_s
                known = self.schedules.get(item["Name"])
                found[item["Name"]] = Scheduled(
                    name=item["Name"],
                    target=detail["Target"]["Arn"],
                    event=target_event(detail["Target"]),
                    period_s=period,
                    next_at=known.next_at if known is not None and known.period_s == period else now + period,
                )
        with self._lock:
            self.schedules = found
        self._start()
        return sorted(found)

    def due(self) -> list[Scheduled]:
        """The schedules whose time has come (each moved on by its period); the timer's one step."""
        now = self.clock()
        ready = []
        with self._lock:
            for item in self.schedules.values():
                if item.next_at <= now:
                    ready.append(item)
                    while item.next_at <= now:
                        item.next_at += item.period_s
        return ready

    def fire_now(self, name: str) -> None:
        """Deliver one schedule's event now, synchronously (tests); its period is not changed."""
        with self._lock:
            item = self.schedules.get(name) or next(
                (s for s in self.schedules.values() if name in s.name), None
            )
        if item is None:
            raise KeyError(f"no schedule {name!r} (deployed: {', '.join(sorted(self.schedules)) or 'none'})")
        self.fire(item.target, dict(item.event))

    def _start(self) -> None:
        if self._thread is not None or not self.schedules:
            return
        self._thread = threading.Thread(target=self._loop, name="local-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        tick = max(0.05, min(1.0, self.minute_s / 4))
        while not self._stop.wait(tick):
            for item in self.due():
                threading.Thread(
                    target=self._deliver, args=(item,), name=f"schedule-{item.name}", daemon=True
                ).start()

    def _deliver(self, item: Scheduled) -> None:
        try:
            self.fire(item.target, dict(item.event))
        except Exception:
            log.exception("schedule %s -> %s failed", item.name, item.target)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
