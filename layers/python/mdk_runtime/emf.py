"""CloudWatch embedded metric format (EMF) documents of the inference function, from templates.

The documents are the ones Powertools' ``Metrics`` (``log_metrics(capture_cold_start_metric=True)``,
``add_metric``, ``single_metric``) wrote for the same calls: same namespace, dimension sets and their
order, metric names and units, values as lists of floats, one JSON document per line on stdout, and the
cold-start document (``ColdStart``, dimensions ``function_name`` and ``service``) once per sandbox.
``tests/unit/test_runtime_emf.py`` checks them against Powertools itself, so they cannot drift.

What differs is the cost: Powertools validates names and units and rebuilds and serialises the whole
document on every request (~100 µs per request on the benchmark machine, most of the handler's overhead);
here each dimension set's document is serialised once, and a request fills in its timestamp and values
and writes the line in one ``write`` (a few µs).

The format: "Embedded metric format specification", https://docs.aws.amazon.com/AmazonCloudWatch/latest/
monitoring/CloudWatch_Embedded_Metric_Format_Specification.html -- a root ``_aws`` member with
``Timestamp`` (ms since the epoch) and ``CloudWatchMetrics`` (``Namespace``, ``Dimensions`` as arrays of
dimension-name arrays, ``Metrics`` as ``Name``/``Unit`` objects), each dimension and metric a root
member ("target member"), a metric's value a number or an array of up to 100 numbers. Standard library
only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from mdk_runtime import telemetry

MILLISECONDS = "Milliseconds"
COUNT = "Count"

_TS = "\x00ts\x00"  # placeholders, replaced in the serialised template by %-format fields
_VALUE = "\x00v{}\x00"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "y", "yes", "t", "true", "on")


def metrics_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Powertools' switches: ``POWERTOOLS_METRICS_DISABLED``, or ``POWERTOOLS_DEV`` unless the former
    says false (``aws_lambda_powertools.metrics.functions.is_metrics_disabled``)."""
    disabled = environ.get("POWERTOOLS_METRICS_DISABLED")
    if disabled is not None:
        return _truthy(disabled)
    return _truthy(environ.get("POWERTOOLS_DEV"))


def document(
    namespace: str,
    dimensions: Mapping[str, str],
    metrics: list[tuple[str, str, Any]],
    timestamp: Any,
) -> dict[str, Any]:
    """One EMF document: the dimensions in their order (one dimension set), each metric's value as a list."""
    return {
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit, _ in metrics],
                }
            ],
        },
        **dimensions,
        **{name: [value] for name, _, value in metrics},
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))  # Powertools' separators


def template(namespace: str, dimensions: Mapping[str, str], metrics: list[tuple[str, str]]) -> str:
    """The document's line with ``%d`` for the timestamp and ``%r`` for each value (a float's repr is
    what ``json.dumps`` writes for it), for ``template % (timestamp, value, ...)``."""
    spec = [(name, unit, _VALUE.format(i)) for i, (name, unit) in enumerate(metrics)]
    text = dumps(document(namespace, dimensions, spec, _TS)).replace("%", "%%")
    text = text.replace(json.dumps(_TS), "%d")
    for i in range(len(metrics)):
        text = text.replace(json.dumps(_VALUE.format(i)), "%r")
    return text + "\n"


class Emitter:
    """The metrics of one function: a per-invocation set flushed as one document, single-metric
    documents with extra dimensions, and the cold-start document."""

    def __init__(
        self,
        namespace: str,
        service: str,
        *,
        environ: Mapping[str, str] = os.environ,
        stream: TextIO | None = None,
    ) -> None:
        self.namespace = namespace
        self.service = service
        # A single_metric document gets "service" only from the environment (Powertools' SingleMetric
        # is built without the function's service).
        self._env_service = environ.get("POWERTOOLS_SERVICE_NAME") or None
        self._function_name = environ.get("POWERTOOLS_METRICS_FUNCTION_NAME") or None
        self.disabled = metrics_disabled(environ)
        self.cold = environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "provisioned-concurrency"
        self._stream = stream
        self.default_dimensions: dict[str, str] = {}
        self.pending: list[tuple[str, str, float]] = []
        self._templates: dict[tuple[tuple[str, str], ...], str] = {}

    def set_default_dimensions(self, **dimensions: str) -> None:
        self.default_dimensions = {k: str(v) for k, v in dimensions.items()}
        self._templates.clear()

    @property
    def dimensions(self) -> dict[str, str]:
        """The invocation set's dimensions: the defaults, then ``service`` (as Powertools adds it)."""
        dims = dict(self.default_dimensions)
        if self.service and not dims.get("service"):
            dims["service"] = self.service
        return dims

    def _write(self, line: str) -> None:
        (self._stream or sys.stdout).write(line)

    # -- the invocation's set --------------------------------------------------------------------

    def add(self, name: str, unit: str, value: float) -> None:
        self.pending.append((name, unit, float(value)))

    def flush(self) -> None:
        """The invocation's metrics as one document (nothing when there are none), then cleared."""
        pending, self.pending = self.pending, []
        if not pending or self.disabled:
            return
        merged: dict[str, tuple[str, list[float]]] = {}  # a name added twice: one metric, two values
        for name, unit, value in pending:
            entry = merged.setdefault(name, (unit, []))
            merged[name] = (unit, [*entry[1], value])
        doc = document(self.namespace, self.dimensions, [(n, u, 0.0) for n, (u, _) in merged.items()], _now())
        for name, (_, values) in merged.items():
            doc[name] = values
        self._write(dumps(doc) + "\n")

    def served(self, latency_ms: float, instances: int) -> None:
        """A served prediction's Latency and Instances, flushed with whatever else the invocation added:
        the hot path, one template filled and written."""
        if self.pending or self.disabled:
            self.add(telemetry.LATENCY, MILLISECONDS, latency_ms)
            self.add(telemetry.INSTANCES, COUNT, instances)
            self.flush()
            return
        key = ((telemetry.LATENCY, MILLISECONDS), (telemetry.INSTANCES, COUNT))
        line = self._templates.get(key)
        if line is None:
            line = self._templates[key] = template(self.namespace, self.dimensions, list(key))
        self._write(line % (_now(), float(latency_ms), float(instances)))

    # -- documents of their own ------------------------------------------------------------------

    def single(self, name: str, unit: str, value: float, dimensions: Mapping[str, str]) -> None:
        """A document of one metric with its own dimensions (Powertools' ``single_metric``)."""
        if self.disabled:
            return
        dims = {k: str(v) for k, v in dimensions.items()}
        if self._env_service and not dims.get("service"):
            dims["service"] = self._env_service
        self._write(dumps(document(self.namespace, dims, [(name, unit, float(value))], _now())) + "\n")

    def cold_start(self, context: Any) -> None:
        """``ColdStart`` once per sandbox (never for provisioned concurrency), after the first
        invocation returns, as ``capture_cold_start_metric=True`` did."""
        if not self.cold:
            return
        self.cold = False
        function_name = self._function_name or getattr(context, "function_name", None)
        dims = {"function_name": str(function_name)}
        if self.service:
            dims["service"] = self.service
        self.single(telemetry.COLD_START, COUNT, 1, dims)


def _now() -> int:
    return int(time.time() * 1000)
