"""What the operator commands answer: typed results, one line of text each, and their JSON.

The same shapes for both backends: a Lambda model's traffic is split between versions (the ``live``
alias), a SageMaker model's between variants (the endpoint's weights); ``unit`` says which, and a
split maps each version or variant to its share of the traffic (0 to 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, cast

from mdk.registry import Deployed

Split = dict[str, float]


def describe(unit: str, split: Split) -> str:
    """``version 2 90 %, version 3 10 %``: who takes the traffic (the ones with a share)."""
    shares = [f"{unit} {name} {100 * share:g} %" for name, share in split.items() if share > 0]
    return ", ".join(shares) or f"no {unit} takes traffic"


class Answer:
    """A command's result as --json prints it: its fields."""

    def to_json(self) -> dict[str, Any]:
        return asdict(cast(Any, self))


@dataclass(frozen=True)
class Share:
    """One version or variant in a status: its share (None: not reported) and what else is known."""

    name: str
    weight: float | None
    role: str  # primary / candidate (Lambda), production / shadow (SageMaker)
    detail: str  # what the status table shows: a version's description, a variant's instances
    extra: dict[str, Any] = field(default_factory=dict)  # the rest of the row, for --json

    def to_json(self, unit: str) -> dict[str, Any]:
        return {unit: self.name, "weight": self.weight, "role": self.role, **self.extra}


@dataclass(frozen=True)
class ModelStatus:
    model: str
    runtime: str
    version: str
    unit: str  # "version" or "variant"
    detail_column: str  # the heading of Share.detail
    traffic: list[Share]
    deployment: dict[str, Any] | None = None  # an in-flight CodeDeploy deployment / endpoint update
    alarms: dict[str, str] = field(default_factory=dict)
    shadow: dict[str, Any] | None = None
    endpoint_status: str | None = None

    @classmethod
    def of(
        cls,
        deployed: Deployed,
        alarms: dict[str, str],
        unit: str,
        column: str,
        traffic: list[Share],
        **rest: Any,
    ) -> ModelStatus:
        """The status of a deployed model: its registry entry, alarm states and traffic."""
        return cls(
            deployed.model, deployed.runtime, deployed.version, unit, column, traffic, alarms=alarms, **rest
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "runtime": self.runtime,
            "version": self.version,
            "traffic": [share.to_json(self.unit) for share in self.traffic],
            "deployment": self.deployment,
            "alarms": self.alarms,
            "shadow": self.shadow,
            "endpoint_status": self.endpoint_status,
        }


@dataclass(frozen=True)
class Shift(Answer):
    """The traffic after ``mdk rollout`` or ``mdk promote``."""

    model: str
    unit: str
    split: Split
    previous: str | None = None  # the version that served all traffic before (a new primary)

    def line(self) -> str:
        before = f" (was {self.unit} {self.previous})" if self.previous else ""
        return f"{self.model}: {describe(self.unit, self.split)}{before}"


@dataclass(frozen=True)
class Rollback(Answer):
    """What ``mdk rollback`` did: the split before and after, or the alarm it fired."""

    model: str
    unit: str
    was: Split
    now: Split | None  # None: SageMaker rolls its update back itself (``rollback_alarm``)
    stopped_deployment: str | None = None
    rollback_alarm: str | None = None
    warning: str | None = None  # the rollback happened, but something needs the operator

    def line(self) -> str:
        if self.now is None:
            return (
                f"{self.model}: rolled back: alarm {self.rollback_alarm} set to ALARM; SageMaker rolls the "
                "endpoint update back on it"
            )
        was, now = describe(self.unit, self.was), describe(self.unit, self.now)
        text = f"{self.model}: rolled back from {was} to {now}"
        if self.stopped_deployment:
            text += f"; stopped CodeDeploy deployment {self.stopped_deployment}"
        return text


@dataclass(frozen=True)
class ShadowChange(Answer):
    """What ``mdk shadow start`` / ``stop`` changed."""

    model: str
    on: bool
    candidate: str | None = None
    sample: float | None = None
    live: str | None = None  # Lambda: the version whose requests are mirrored
    endpoint_config: str | None = None  # SageMaker: the endpoint config applied
    shadow_variant: dict[str, Any] | None = None  # SageMaker: the shadow variant of that config

    def line(self) -> str:
        if not self.on:
            applied = f" (endpoint config {self.endpoint_config})" if self.endpoint_config else ""
            return f"{self.model}: shadow off{applied}"
        target = f"version {self.live}" if self.live else "the production variant"
        text = (
            f"{self.model}: shadow on: {100 * (self.sample or 0):g} % of the requests to {target} mirrored "
            f"to {self.candidate}"
        )
        return text + (f" (endpoint config {self.endpoint_config})" if self.endpoint_config else "")


@dataclass(frozen=True)
class ShadowReport(Answer):
    """A candidate's Shadow* metrics over the last ``hours``."""

    model: str
    candidate: str
    hours: float
    samples: int
    agreement_percent: float | None
    max_abs_diff: float | None
    candidate_latency_ms: float | None
    live_latency_ms: float | None
    latency_delta_ms: float | None
    errors: int

    MEASURES: ClassVar[tuple[str, ...]] = (
        "samples",
        "agreement_percent",
        "max_abs_diff",
        "candidate_latency_ms",
        "live_latency_ms",
        "latency_delta_ms",
        "errors",
    )
