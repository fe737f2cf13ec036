"""Percentiles of nanosecond samples."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    p50_us: float
    p99_us: float
    mean_us: float

    def to_json(self) -> dict[str, float]:
        return {"n": self.n, "p50_us": self.p50_us, "p99_us": self.p99_us, "mean_us": self.mean_us}


def percentile(sorted_samples: list[float], q: float) -> float:
    if not sorted_samples:
        raise ValueError("no samples")
    index = min(len(sorted_samples) - 1, max(0, round(q * (len(sorted_samples) - 1))))
    return sorted_samples[index]


def summarize(samples_ns: list[int] | list[float]) -> Summary:
    ordered = sorted(float(s) / 1e3 for s in samples_ns)
    return Summary(
        n=len(ordered),
        p50_us=round(percentile(ordered, 0.50), 1),
        p99_us=round(percentile(ordered, 0.99), 1),
        mean_us=round(sum(ordered) / len(ordered), 1),
    )
