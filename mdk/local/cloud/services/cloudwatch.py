"""The local CloudWatch: metrics from the functions, alarms evaluated from them, the alarms of the stacks.

* metrics: :class:`Metrics` sends data in the background (counts of one second as one statistic set,
  :func:`aggregate_counts`, as the CloudWatch agent does); the runner
  (:mod:`mdk.local.cloud.services.lambda_`) reports ``AWS/Lambda`` metrics per invocation and turns the
  functions' embedded-metric-format log lines into data (:func:`emf_data`);
* samples: the data points of one metric in a window (:func:`metric_values`, read from moto's store by
  :mod:`mdk.local.cloud.moto_adapter`) and their statistics (:class:`Samples`);
* alarms: :class:`AlarmEvaluator` evaluates every alarm from those data points: the alarm's statistic
  (Sum, Average, Minimum, Maximum, SampleCount or a percentile) over its window, compared with its
  threshold; missing data as the alarm says; state changes notify the alarm's SNS actions. It runs in the
  background for every alarm and on demand during a rollout (then over everything since the traffic
  shift began, :mod:`mdk.local.cloud.services.codedeploy`);
* the ``AWS::CloudWatch::Alarm`` resources moto's CloudFormation skips, created through the API.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.registry import Completion, completes

log = logging.getLogger("mdk.local")
_COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


# -------------------------------------------------------------------------------------- metrics


class Metrics:
    """Metric data for the local CloudWatch, sent in the background so invocations never wait for it."""

    def __init__(self, cloudwatch: Any) -> None:
        self._cloudwatch = cloudwatch
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="mdk-local-metrics")
        self._thread.start()

    def put(self, namespace: str, datum: dict[str, Any]) -> None:
        self._queue.put((namespace, datum))

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything put so far is stored."""
        done = threading.Event()
        self._queue.put(("__flush__", {"event": done}))
        done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(5)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            batch: dict[str, list[dict[str, Any]]] = {}
            flushes: list[threading.Event] = []
            while item is not None:
                namespace, datum = item
                if namespace == "__flush__":
                    flushes.append(datum["event"])
                else:
                    batch.setdefault(namespace, []).append(datum)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            for namespace, raw in batch.items():
                data = aggregate_counts(raw)
                for start in range(0, len(data), 500):
                    try:
                        self._cloudwatch.put_metric_data(
                            Namespace=namespace, MetricData=data[start : start + 500]
                        )
                    except Exception as exc:  # noqa: BLE001 - metrics are best effort, like the agent's
                        log.warning("could not store %d metric data in %s: %s", len(data), namespace, exc)
            for event in flushes:
                event.set()
            if item is None:
                return


def aggregate_counts(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Count data points of one series within the same second as one statistic set; others as they are.

    What the CloudWatch agent does before PutMetricData: a handful of stored data points per second
    instead of several per request (sums, sample counts, minimum and maximum are unchanged; percentiles
    are only asked of latencies, which stay raw).
    """
    kept: list[dict[str, Any]] = []
    sets: dict[tuple[Any, ...], dict[str, Any]] = {}
    for datum in data:
        if datum.get("Unit") != "Count" or "Value" not in datum:
            kept.append(datum)
            continue
        stamp = datum["Timestamp"].replace(microsecond=0)
        dims = tuple((d["Name"], d["Value"]) for d in datum.get("Dimensions", []))
        key = (datum["MetricName"], dims, stamp)
        value = float(datum["Value"])
        entry = sets.get(key)
        if entry is None:
            sets[key] = {
                "MetricName": datum["MetricName"],
                "Dimensions": datum.get("Dimensions", []),
                "Unit": "Count",
                "Timestamp": datum["Timestamp"],
                "StatisticValues": {"SampleCount": 1.0, "Sum": value, "Minimum": value, "Maximum": value},
            }
        else:
            entry["Timestamp"] = max(entry["Timestamp"], datum["Timestamp"])  # stamped when last seen
            stats = entry["StatisticValues"]
            stats["SampleCount"] += 1.0
            stats["Sum"] += value
            stats["Minimum"] = min(stats["Minimum"], value)
            stats["Maximum"] = max(stats["Maximum"], value)
    return kept + list(sets.values())


def emf_data(line: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(namespace, MetricDatum) for every metric of an embedded-metric-format log line (else nothing)."""
    if not line.startswith("{") or '"_aws"' not in line:
        return
    try:
        record = json.loads(line)
        directives = record["_aws"]["CloudWatchMetrics"]
        timestamp = datetime.fromtimestamp(record["_aws"]["Timestamp"] / 1000, UTC)
    except (ValueError, KeyError, TypeError):
        return
    for directive in directives:
        for dimension_set in directive.get("Dimensions", []):
            dimensions = [{"Name": d, "Value": str(record[d])} for d in dimension_set if d in record]
            for metric in directive.get("Metrics", []):
                values = record.get(metric["Name"])
                for value in values if isinstance(values, list) else [values]:
                    if isinstance(value, int | float):
                        yield (
                            directive["Namespace"],
                            {
                                "MetricName": metric["Name"],
                                "Dimensions": dimensions,
                                "Value": float(value),
                                "Unit": metric.get("Unit", "None"),
                                "Timestamp": timestamp,
                            },
                        )


# -------------------------------------------------------------------------------------- samples


@dataclass
class Samples:
    """The data points of one metric in a window: raw values, plus the statistic sets stored for counts."""

    values: list[float] = field(default_factory=list)
    sum: float = 0.0
    count: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, value: float) -> None:
        self.values.append(value)
        self.add_set(value, 1.0, value, value)

    def add_set(self, total: float, count: float, minimum: float, maximum: float) -> None:
        self.sum += total
        self.count += count
        self.minimum = min(self.minimum, minimum)
        self.maximum = max(self.maximum, maximum)

    def statistic(self, name: str) -> float:
        if name == "Sum":
            return self.sum
        if name == "Average":
            return self.sum / self.count
        if name == "Minimum":
            return self.minimum
        if name == "Maximum":
            return self.maximum
        if name == "SampleCount":
            return self.count
        if name.startswith("p") and name[1:].replace(".", "", 1).isdigit() and self.values:
            ordered = sorted(self.values)  # percentiles need raw values: latencies are stored raw
            rank = max(0, math.ceil(float(name[1:]) / 100 * len(ordered)) - 1)
            return ordered[rank]
        raise ValueError(f"statistic {name!r} is not evaluated locally")


def metric_values(
    region: str, namespace: str, name: str, dimensions: dict[str, str], since: datetime
) -> Samples:
    """The data points of one metric (exact dimension set) since ``since``: what an alarm evaluates."""
    samples = Samples()
    for point in moto_adapter.metric_points(region, namespace, name, dimensions, since):
        if isinstance(point, float):
            samples.add(point)
        else:
            samples.add_set(*point)
    return samples


# --------------------------------------------------------------------------------------- alarms


class AlarmEvaluator:
    def __init__(
        self, *, cloudwatch: Any, region: str, minute_s: float, sns: Any = None, sqs: Any = None
    ) -> None:
        self.cloudwatch = cloudwatch
        self.sns = sns
        self.sqs = sqs
        self._previous_round: datetime | None = None  # when the last background round began
        self.region = region
        self.minute_s = minute_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def evaluate(self, names: list[str], since: datetime | None = None) -> dict[str, str]:
        """Evaluate the named alarms now, set their state, return it by name."""
        if not names:
            return {}
        states = {}
        for alarm in self.cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", []):
            state, reason = self._state(alarm, since)
            states[alarm["AlarmName"]] = state
            if state != alarm["StateValue"]:
                self.cloudwatch.set_alarm_state(
                    AlarmName=alarm["AlarmName"], StateValue=state, StateReason=reason
                )
                log.info("alarm %s: %s (%s)", alarm["AlarmName"], state, reason)
                self._notify(alarm, state, reason)
        return states

    _ACTIONS: ClassVar[dict[str, str]] = {
        "ALARM": "AlarmActions",
        "OK": "OKActions",
        "INSUFFICIENT_DATA": "InsufficientDataActions",
    }

    def _notify(self, alarm: dict[str, Any], state: str, reason: str) -> None:
        """What CloudWatch sends to the SNS topics among the alarm's actions for the new state."""
        if self.sns is None or not alarm.get("ActionsEnabled", True):
            return
        topics = [a for a in alarm.get(self._ACTIONS[state], []) if a.startswith("arn:aws:sns:")]
        if not topics:
            return
        name = alarm["AlarmName"]
        message = {
            "AlarmName": name,
            "AlarmDescription": alarm.get("AlarmDescription"),
            "AWSAccountId": moto_adapter.ACCOUNT,
            "NewStateValue": state,
            "NewStateReason": reason,
            "StateChangeTime": datetime.now(UTC).isoformat(),
            "Region": self.region,
            "AlarmArn": alarm.get("AlarmArn"),
            "OldStateValue": alarm["StateValue"],
            "Trigger": {
                "MetricName": alarm.get("MetricName"),
                "Namespace": alarm.get("Namespace"),
                "Statistic": alarm.get("Statistic"),
                "Dimensions": [{"name": d["Name"], "value": d["Value"]} for d in alarm.get("Dimensions", [])],
                "Period": alarm.get("Period"),
                "Threshold": alarm.get("Threshold"),
                "ComparisonOperator": alarm.get("ComparisonOperator"),
            },
        }
        for topic in topics:
            try:
                self.sns.publish(
                    TopicArn=topic,
                    Subject=f'{state}: "{name}" in {self.region}'[:100],
                    Message=json.dumps(message),
                )
            except Exception as exc:  # noqa: BLE001 - a lost notification must not stop evaluation
                log.warning("alarm %s: could not notify %s: %s", name, topic, exc)

    def _state(self, alarm: dict[str, Any], since: datetime | None) -> tuple[str, str]:
        single = single_metric(alarm)
        if single is None:
            return alarm["StateValue"], "metric math alarms are not evaluated locally"
        alarm = {**alarm, **single}
        if since is None:
            periods = int(alarm.get("EvaluationPeriods", 1))
            window = timedelta(seconds=periods * int(alarm.get("Period", 60)) / 60 * self.minute_s)
            since = datetime.now(UTC) - window
            if self._previous_round is not None:
                # A simulated window can be shorter than the time between two rounds: reach back to the
                # round before (and a margin for metrics still on their way), or data points would fall
                # between evaluations. CloudWatch sees every data point in some period; so must we.
                since = min(since, self._previous_round - timedelta(seconds=2))
        dimensions = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        values = metric_values(self.region, alarm["Namespace"], alarm["MetricName"], dimensions, since)
        if not values.count:
            missing = alarm.get("TreatMissingData", "missing")
            if missing == "breaching":
                return "ALARM", "no data (treated as breaching)"
            return (
                "OK" if missing in ("notBreaching", "ignore") else "INSUFFICIENT_DATA"
            ), "no data in the window"
        statistic = alarm.get("ExtendedStatistic") or alarm.get("Statistic", "Average")
        value = values.statistic(statistic)
        threshold = float(alarm["Threshold"])
        breaching = _COMPARE[alarm["ComparisonOperator"]](value, threshold)
        verdict = "crossed" if breaching else "within"
        points = f"{values.count:g} data points"
        reason = f"{statistic} {value:g} over {points}: {verdict} threshold {threshold:g} (local)"
        return ("ALARM" if breaching else "OK"), reason

    @property
    def retention_s(self) -> float:
        """How long the local CloudWatch keeps data points: 60 simulated minutes (2 min at 2 s a minute),
        longer than any alarm window or canary step of the example configs."""
        return max(60.0, 60 * self.minute_s)

    def start(self, every_s: float = 2.0) -> None:
        def loop() -> None:
            while not self._stop.wait(every_s):
                started = datetime.now(UTC)
                try:
                    cutoff = datetime.now(UTC) - timedelta(seconds=self.retention_s)
                    moto_adapter.prune_metrics(self.region, cutoff)
                    alarms = self.cloudwatch.describe_alarms().get("MetricAlarms", [])
                    self._queue_metrics(alarms)
                    names = [a["AlarmName"] for a in alarms]
                    for start in range(0, len(names), 100):
                        self.evaluate(names[start : start + 100])
                    self._previous_round = started
                except Exception as exc:  # noqa: BLE001 - the loop outlives a failed round
                    log.warning("alarm evaluation failed: %s", exc)

        self._thread = threading.Thread(target=loop, daemon=True, name="mdk-alarms")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    _QUEUE_METRICS: ClassVar[dict[str, str]] = {
        "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed": "ApproximateNumberOfMessagesDelayed",
    }

    def _queue_metrics(self, alarms: list[dict[str, Any]]) -> None:
        """The AWS/SQS gauges that alarms watch (a dead-letter queue's depth), read from the local queues
        at every tick as SQS reports them to CloudWatch every minute."""
        if self.sqs is None:
            return
        data: list[dict[str, Any]] = []
        for described in alarms:
            alarm = single_metric(described) or described
            attribute = self._QUEUE_METRICS.get(alarm.get("MetricName", ""))
            dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
            if alarm.get("Namespace") != "AWS/SQS" or attribute is None or "QueueName" not in dims:
                continue
            try:
                url = self.sqs.get_queue_url(QueueName=dims["QueueName"])["QueueUrl"]
                value = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])["Attributes"]
            except Exception as exc:  # noqa: BLE001 - a missing queue: no data, as on AWS
                log.debug("queue %s: %s", dims["QueueName"], exc)
                continue
            data.append(
                {
                    "MetricName": alarm["MetricName"],
                    "Dimensions": [{"Name": "QueueName", "Value": dims["QueueName"]}],
                    "Value": float(value.get(attribute, 0)),
                    "Unit": "Count",
                    "Timestamp": datetime.now(UTC),
                }
            )
        if data:
            self.cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=data)


def single_metric(alarm: dict[str, Any]) -> dict[str, Any] | None:
    """The alarm's one metric as the plain alarm keys (Namespace, MetricName, Dimensions, Period,
    Statistic or ExtendedStatistic): as described for a plain alarm, or from a ``Metrics`` list holding a
    single labelled MetricStat (how cdk-monitoring-constructs writes its alarms). None for metric math."""
    if "MetricName" in alarm:
        return alarm
    queries = alarm.get("Metrics") or []
    if len(queries) != 1 or "MetricStat" not in queries[0]:
        return None
    stat = queries[0]["MetricStat"]
    metric = stat["Metric"]
    statistic = str(stat["Stat"])
    plain = {
        "Namespace": metric["Namespace"],
        "MetricName": metric["MetricName"],
        "Dimensions": metric.get("Dimensions", []),
        "Period": stat["Period"],
    }
    key = (
        "Statistic"
        if statistic in ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
        else "ExtendedStatistic"
    )
    plain[key] = statistic
    return plain


@completes("AWS::CloudWatch::Alarm")
def alarm(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    allowed = {
        "AlarmName",
        "AlarmDescription",
        "ActionsEnabled",
        "OKActions",
        "AlarmActions",
        "InsufficientDataActions",
        "MetricName",
        "Namespace",
        "Statistic",
        "ExtendedStatistic",
        "Dimensions",
        "Period",
        "Unit",
        "EvaluationPeriods",
        "DatapointsToAlarm",
        "Threshold",
        "ComparisonOperator",
        "TreatMissingData",
        "EvaluateLowSampleCountPercentile",
        "Metrics",
        "ThresholdMetricId",
    }
    kwargs = {k: v for k, v in props.items() if k in allowed}
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    for dimension in kwargs.get("Dimensions", []):
        dimension["Value"] = str(dimension["Value"])
    for query in kwargs.get("Metrics", []):
        for dimension in query.get("MetricStat", {}).get("Metric", {}).get("Dimensions", []):
            dimension["Value"] = str(dimension["Value"])
    if "Threshold" in kwargs:
        kwargs["Threshold"] = float(kwargs["Threshold"])
    ctx.client("cloudwatch").put_metric_alarm(**kwargs)
