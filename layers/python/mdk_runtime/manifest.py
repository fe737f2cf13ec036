"""The batch manifest, ``results/<model>/<run>/_status.json``: the run's state as users read it.

One type for every side that writes or reads it: the trigger and status functions (on this package's
Lambda layer), the local runner (``mdk batch run``) and the operator CLI (``mdk batch submit/status``).
:class:`Manifest` is frozen; each step of a run is a method that returns the next manifest, so the
states a run goes through are spelled here and nowhere else. Its JSON is the one the README documents:
:meth:`Manifest.to_json` writes the members in that order, and the parts whose members depend on the
path that wrote them (``input``, ``job``, ``output``, ``store``, ``timings``) are typed dicts kept in
the order they were filled, so a manifest read back re-serialises byte for byte (:func:`encode`).
Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, cast

from mdk_runtime.batch import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    INCOMPLETE,
    MANIFEST_VERSION,
    REJECTED,
    BatchInputError,
    OutputTally,
    now_iso,
    seconds_between,
)


class Problem(TypedDict):
    """Why a run was refused or is incomplete: ``BatchInputError.to_json()``."""

    code: str
    field: str
    message: str


class Source(TypedDict, total=False):
    """``input``: the file, as its event named it, and what the preflight's pass counted."""

    bucket: str | None
    key: str
    version_id: str | None
    sequencer: str | None
    size: int | None
    etag: str | None
    format: str
    compression: str | None
    lines: int
    bytes: int
    blank_lines: int
    longest_line_bytes: int


class Job(TypedDict, total=False):
    """``job``: the transform job (the local runner's: ``local-<run>``)."""

    name: str
    arn: str | None
    sagemaker_model: str
    instance_type: str
    instance_count: int
    max_payload_mb: int
    max_concurrent_transforms: int
    staged_input: str
    failure_reason: str


class Output(TypedDict, total=False):
    """``output``: where the job writes, then what the status function read back (``OutputTally``)."""

    prefix: str
    files: list[str]
    lines: int
    error_lines: int
    unreadable_lines: int
    errors_by_code: dict[str, int]
    first_errors: list[dict[str, Any]]
    missing_lines: int


class Store(TypedDict):
    """``store``: the load of a completed run's predictions into the prediction store."""

    state: str  # Loading, Loaded
    table: str | None
    stored: int
    skipped_errors: int
    missing_id: int
    too_large: int
    next_line: int  # 0-based output line the next page starts at


class Timings(TypedDict, total=False):
    received: str
    started: str
    created: str
    ended: str
    seconds: float | None


STORE_LOADING = "Loading"
STORE_LOADED = "Loaded"
_MEMBERS = ("manifest_version", "run_id", "model", "state", "message", "input", "errors", "job", "output")
_ALL_MEMBERS = (*_MEMBERS, "store", "timings", "updated", "model_version")


@dataclass(frozen=True)
class Manifest:
    run_id: str
    model: str
    state: str
    message: str
    input: Source
    errors: tuple[Problem, ...] = ()
    job: Job | None = None
    output: Output | None = None
    store: Store | None = None
    timings: Timings = field(default_factory=lambda: Timings(received=now_iso()))
    updated: str = field(default_factory=now_iso)
    model_version: str | None = None  # the trigger's: the model version the job scores with
    manifest_version: int = MANIFEST_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)  # members of a later kit, kept as read

    # -- the JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "manifest_version": self.manifest_version,
            "run_id": self.run_id,
            "model": self.model,
            "state": self.state,
            "message": self.message,
            "input": dict(self.input),
            "errors": [dict(e) for e in self.errors],
            "job": None if self.job is None else dict(self.job),
            "output": None if self.output is None else dict(self.output),
            "store": None if self.store is None else dict(self.store),
            "timings": dict(self.timings),
            "updated": self.updated,
        }
        if self.model_version is not None:
            doc["model_version"] = self.model_version
        doc.update(self.extra)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Manifest:
        """A manifest as read from its JSON (any kit version's: unknown members are kept)."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("run_id"), str):
            raise ValueError("not a batch manifest (no run_id)")
        return cls(
            manifest_version=int(doc.get("manifest_version", MANIFEST_VERSION)),
            run_id=doc["run_id"],
            model=str(doc.get("model", "")),
            state=str(doc.get("state", "")),
            message=str(doc.get("message", "")),
            input=cast(Source, dict(doc.get("input") or {})),
            errors=tuple(doc.get("errors") or ()),
            job=None if doc.get("job") is None else cast(Job, dict(doc["job"])),
            output=None if doc.get("output") is None else cast(Output, dict(doc["output"])),
            store=None if doc.get("store") is None else cast(Store, dict(doc["store"])),
            timings=cast(Timings, dict(doc.get("timings") or {})),
            updated=str(doc.get("updated", "")),
            model_version=doc.get("model_version"),
            extra={k: v for k, v in doc.items() if k not in _ALL_MEMBERS},
        )

    # -- the steps of a run: it starts as Manifest(run_id, model, state, message, input), received now --

    def with_input(self, source: Source) -> Manifest:
        """What the preflight learnt of the file (its format, its lines)."""
        return replace(self, input=Source(**source))

    def reject(self, problems: Sequence[BatchInputError]) -> Manifest:
        """The preflight refused the file: no job; each problem and its field."""
        first = problems[0]
        return replace(
            self,
            state=REJECTED,
            message=f"not started: {first.field}: {first.message}",
            errors=tuple(cast(Problem, p.to_json()) for p in problems),
        )

    def missing(self, problem: Problem) -> Manifest:
        """One more reason the run cannot be trusted (its own manifest was gone, say)."""
        return replace(self, errors=(*self.errors, problem))

    def started(self, job: Job) -> Manifest:
        """The job is running (SageMaker accepted it, or the local runner started it)."""
        return replace(self, job=Job(**job), timings=cast(Timings, {**self.timings, "started": now_iso()}))

    def refused(self, message: str, reason: str) -> Manifest:
        """SageMaker refused to start the job (a request error, not a throttle)."""
        return self.settle(FAILED, message, failure_reason=reason)

    def job_reported(
        self, job: Job, *, created: str | None, started: str | None, ended: str | None
    ) -> Manifest:
        """A job's final state change: its name and ARN (and reason), its times as SageMaker gives them."""
        timings = Timings(**self.timings)
        for name, value in (("created", created), ("started", started), ("ended", ended)):
            if value:
                timings[name] = value  # type: ignore[literal-required]
        timings["seconds"] = seconds_between(created, ended)
        return replace(self, job=cast(Job, {**(self.job or {}), **job}), timings=timings)

    def ended_now(self) -> Manifest:
        """The local runner's job is over: ended now, timed from its start."""
        timings = cast(Timings, {**self.timings, "ended": now_iso()})
        timings["seconds"] = seconds_between(timings.get("started"), timings["ended"])
        return replace(self, timings=timings)

    def reconcile(self, tally: OutputTally, *, files: list[str]) -> Manifest:
        """A job SageMaker reports Completed: its output read back, and every input line needs its output
        line (else Incomplete)."""
        expected = self.input.get("lines")
        output = cast(Output, {**(self.output or {}), "files": files, **tally.to_json()})
        reconciled = replace(self, output=output)
        if expected is None:
            return reconciled.settle(
                INCOMPLETE, "the manifest does not say how many input lines there were; output unverified"
            )
        missing = expected - tally.lines
        output["missing_lines"] = max(missing, 0)
        if not files:
            message = f"SageMaker reported Completed but wrote no output for {expected} input lines"
            return reconciled.settle(INCOMPLETE, message)
        if missing > 0:
            return reconciled.settle(
                INCOMPLETE,
                f"SageMaker reported Completed but the output has {tally.lines} of {expected} lines "
                f"({missing} missing)",
            )
        if missing < 0:
            return reconciled.settle(
                INCOMPLETE,
                f"the output has {tally.lines} lines for {expected} input lines: outputs no longer line up "
                "with inputs",
            )
        scored = tally.lines - tally.error_lines
        if tally.error_lines:
            message = f"{expected} lines: {scored} scored, {tally.error_lines} rejected (see output)"
            return reconciled.settle(COMPLETED, message)
        return reconciled.settle(COMPLETED, f"{expected} lines scored")

    def settle(self, state: str, message: str, *, failure_reason: str | None = None) -> Manifest:
        """The run's final state (SageMaker's Failed or Stopped overrides what the output showed)."""
        job = self.job
        if failure_reason is not None:
            job = cast(Job, {**(job or {}), "failure_reason": failure_reason})
        return replace(self, state=state, message=message, job=job)

    def loading(self, table: str | None) -> Manifest:
        """A completed run of a model with a prediction store: the load starts at output line 0."""
        store = Store(
            state=STORE_LOADING,
            table=table,
            stored=0,
            skipped_errors=0,
            missing_id=0,
            too_large=0,
            next_line=0,
        )
        return replace(self, store=store)

    def with_store(self, store: Store) -> Manifest:
        """The store load's counts after a page (or its end)."""
        return replace(self, store=Store(**store))

    def touched(self) -> Manifest:
        """Updated now: every write of the manifest says when."""
        return replace(self, updated=now_iso())

    @property
    def settled(self) -> bool:
        """Final, store load included: what ``mdk batch submit`` waits for."""
        return self.state != IN_PROGRESS and (self.store is None or self.store.get("state") != STORE_LOADING)


def encode(manifest: Manifest) -> bytes:
    """The bytes of ``_status.json``, as every writer writes them (two-space indent, a final newline)."""
    return (json.dumps(manifest.to_json(), indent=2) + "\n").encode()


def decode(body: bytes | str) -> Manifest:
    return Manifest.from_json(json.loads(body))
