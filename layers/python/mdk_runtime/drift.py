"""A model's baseline (what its inputs and outputs looked like on a sample the user supplies) and drift
against it, as the population stability index (PSI).

Why PSI, not Kolmogorov-Smirnov: PSI is one statistic for numeric features *and* for categorical outputs
(predicted labels), so every model gets the same kind of drift figure and one alarm threshold fits all
of them; it is computed from binned shares, so the baseline is a small JSON file (decile edges and the
share of the sample in each bin) and the scheduled job needs no raw training data; KS needs the raw
sample (or its full empirical CDF) and does not apply to labels. The usual reading (e.g. Siddiqi,
"Credit Risk Scorecards", 2006): PSI < 0.1 no significant change, 0.1-0.2 a moderate shift worth a look,
> 0.2 a significant shift -- hence ``monitor.drift_threshold``'s default of 0.2.

    PSI = sum over bins of (a - e) * ln(a / e)

with ``e`` the baseline's share of a bin and ``a`` the window's; an empty bin counts as ``EPSILON`` so
the logarithm is defined. Numeric values are binned by the baseline's decile edges, the first and last
bins open-ended (a value beyond the baseline's range falls in an end bin); labels by category, every
label the baseline never saw pooled into one extra bin (baseline share 0, i.e. ``EPSILON``).

Standard library only (the monitor function's zip layer has no numpy): the monitor Lambda function
and ``mdk baseline`` share it.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

EPSILON = 1e-4  # the share an empty bin counts as
METHOD = "psi"
UNSEEN = "__unseen__"  # the extra bin of labels the baseline has no share for


def _finite(values: Iterable[Any]) -> list[float]:
    return [v for v in (float(x) for x in values) if math.isfinite(v)]


def quantile(ordered: Sequence[float], q: float) -> float:
    """numpy's default (linear) quantile of sorted values."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def numeric_summary(values: Iterable[Any]) -> dict[str, Any]:
    """Mean, standard deviation, range, decile edges (duplicates dropped) and the sample's share in each
    of the ``len(edges) + 1`` bins."""
    data = sorted(_finite(values))
    if not data:
        raise ValueError("no finite values to summarise")
    mean = math.fsum(data) / len(data)
    edges = sorted({quantile(data, k / 10) for k in range(1, 10)})
    return {
        "kind": "numeric",
        "mean": mean,
        "std": math.sqrt(math.fsum((x - mean) ** 2 for x in data) / len(data)),
        "min": data[0],
        "max": data[-1],
        "edges": edges,
        "shares": bin_shares(data, edges),
    }


def bin_shares(values: Iterable[Any], edges: Sequence[float]) -> list[float]:
    """The share of ``values`` in each bin ``(-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    counts = [0] * (len(edges) + 1)
    for value in _finite(values):
        counts[bisect.bisect_right(edges, value)] += 1
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def label_key(label: Any) -> str:
    """Labels as strings, so a baseline's JSON keys, a prediction's label and feedback compare alike."""
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def label_summary(labels: Iterable[Any]) -> dict[str, Any]:
    counts = Counter(label_key(x) for x in labels)
    total = sum(counts.values())
    if not total:
        raise ValueError("no labels to summarise")
    return {"kind": "label", "shares": {k: v / total for k, v in sorted(counts.items())}}


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares (same bins)."""
    if len(expected) != len(actual):
        raise ValueError(f"expected {len(expected)} bins, got {len(actual)}")
    total = 0.0
    for e_raw, a_raw in zip(expected, actual, strict=True):
        e, a = max(e_raw, epsilon), max(a_raw, epsilon)
        total += (a - e) * math.log(a / e)
    return total


def numeric_psi(summary: Mapping[str, Any], values: Iterable[Any]) -> float:
    return psi(summary["shares"], bin_shares(values, summary["edges"]))


def label_psi(summary: Mapping[str, Any], labels: Iterable[Any]) -> float:
    shares: Mapping[str, float] = summary["shares"]
    counts = Counter(label_key(x) if label_key(x) in shares else UNSEEN for x in labels)
    total = sum(counts.values())
    if not total:
        raise ValueError("no labels to compare")
    keys = [*shares, UNSEEN]
    expected = [shares.get(k, 0.0) for k in keys]
    return psi(expected, [counts.get(k, 0) / total for k in keys])


def summary_psi(summary: Mapping[str, Any], values: Sequence[Any]) -> float:
    """PSI of a window's values against one baseline entry (numeric or label)."""
    if summary.get("kind") == "label":
        return label_psi(summary, values)
    return numeric_psi(summary, [float(v) for v in values])


def feature_columns(instances: Sequence[Any], input_names: Sequence[str]) -> dict[str, list[float]]:
    """Per-feature columns of tabular instances: an instance is a row of numbers (one input), a number,
    or an object of input name -> number or row. A feature is named after its input, with ``[j]`` for
    the j-th column of a row. Instances that are not numbers or rows of numbers are skipped."""
    columns: dict[str, list[float]] = {}
    single = input_names[0] if len(input_names) == 1 else None
    for instance in instances:
        if isinstance(instance, Mapping):
            parts = [(str(k), v) for k, v in instance.items() if not input_names or k in input_names]
        elif single is not None:
            parts = [(single, instance)]
        else:
            continue
        for name, value in parts:
            for feature, number in _flat(name, value):
                columns.setdefault(feature, []).append(number)
    return columns


def _flat(name: str, value: Any) -> list[tuple[str, float]]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [(name, float(value))]
    if isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        if len(value) == 1:
            return [(name, float(value[0]))]
        return [(f"{name}[{j}]", float(v)) for j, v in enumerate(value)]
    return []


def prediction_value(prediction: Any) -> tuple[str, Any] | None:
    """``("label", label)`` or ``("numeric", value)`` of one prediction as the predict route answers it
    (a classifier's ``{"label": ...}``, a number, a one-number row, or an object of one number)."""
    if isinstance(prediction, Mapping):
        if "label" in prediction:
            return "label", prediction["label"]
        numbers = [v for v in prediction.values() if _number(v) is not None]
        if len(numbers) == 1:
            return "numeric", _number(numbers[0])
        return None
    number = _number(prediction)
    return None if number is None else ("numeric", number)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list) and len(value) == 1:
        return _number(value[0])
    return None


def build_baseline(
    model: str,
    version: str,
    instances: Sequence[Any],
    predictions: Sequence[Any],
    *,
    input_names: Sequence[str],
    tabular: bool,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The baseline document ``mdk baseline`` writes: per-feature statistics (tabular models only) and the
    output distribution (labels for a classifier, numeric bins otherwise)."""
    features: dict[str, Any] = {}
    if tabular:
        for name, column in feature_columns(instances, input_names).items():
            features[name] = numeric_summary(column)
    values = [v for v in (prediction_value(p) for p in predictions) if v is not None]
    if not values:
        raise ValueError("the model's predictions have no label or single number to baseline")
    kinds = {k for k, _ in values}
    output = (
        label_summary(v for _, v in values)
        if "label" in kinds
        else numeric_summary([float(v) for _, v in values])
    )
    return {
        "model": model,
        "version": version,
        "created": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": len(instances),
        "inputs": list(input_names),
        "features": features,
        "output": output,
        "method": METHOD,
    }


def drift(
    baseline: Mapping[str, Any], instances: Sequence[Any], predictions: Sequence[Any]
) -> dict[str, Any]:
    """PSI per baseline feature (``features``), of the output (``output``), and their maximum (``max``,
    with ``worst`` naming it: a feature, or ``"output"``)."""
    per_feature: dict[str, float] = {}
    input_names = [str(n) for n in baseline.get("inputs") or []]
    columns = feature_columns(instances, input_names) if baseline.get("features") else {}
    for name, summary in (baseline.get("features") or {}).items():
        column = columns.get(name)
        if column:
            per_feature[name] = numeric_psi(summary, column)
    output: float | None = None
    values = [v for _, v in (x for x in (prediction_value(p) for p in predictions) if x is not None)]
    if values and baseline.get("output"):
        output = summary_psi(baseline["output"], values)
    candidates = dict(per_feature)
    if output is not None:
        candidates["output"] = output
    worst = max(candidates, key=lambda k: candidates[k]) if candidates else None
    return {
        "features": per_feature,
        "output": output,
        "max": candidates[worst] if worst is not None else None,
        "worst": worst,
    }
