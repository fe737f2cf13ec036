"""The manifest type against the manifests the kit wrote before it had one.

``manifests/`` holds one ``_status.json`` of every shape the dict-built trigger, status function and
local runner wrote (captured from this directory's tests at the commit before the type: each state,
with and without a store load, a refused job, each kind of rejection), the local runner's paths
shortened. Each must read back and re-serialise byte for byte.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mdk_runtime import batch
from mdk_runtime.batch import BatchInputError
from mdk_runtime.manifest import Manifest, decode, encode

WRITTEN = sorted((Path(__file__).parent / "manifests").glob("*.json"))


def test_every_shape_was_captured() -> None:
    states = {decode(path.read_bytes()).state for path in WRITTEN}
    assert states == {
        batch.IN_PROGRESS, batch.COMPLETED, batch.INCOMPLETE, batch.FAILED, batch.STOPPED, batch.REJECTED
    }  # fmt: skip
    assert {path.name.split("-")[0] for path in WRITTEN} == {"aws", "local"}


@pytest.mark.parametrize("path", WRITTEN, ids=[p.stem for p in WRITTEN])
def test_a_manifest_written_before_reads_back_and_reserialises_identically(path: Path) -> None:
    body = path.read_bytes()
    manifest = decode(body)
    assert encode(manifest) == body
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_members_of_a_later_kit_are_kept() -> None:
    body = (WRITTEN[0]).read_bytes()
    doc = decode(body).to_json()
    doc["retries"] = {"count": 2}
    again = Manifest.from_json(doc)
    assert again.extra == {"retries": {"count": 2}}
    assert again.to_json() == doc
    with pytest.raises(ValueError, match="not a batch manifest"):
        Manifest.from_json({"state": "Completed"})


def test_steps_return_new_manifests_and_leave_the_old_one_as_it_was() -> None:
    manifest = Manifest(run_id="r", model="m", state=batch.IN_PROGRESS, message="", input={"key": "k"})
    before = manifest.to_json()
    rejected = manifest.reject([BatchInputError("empty_file", "file", "the file holds no records")])
    assert manifest.to_json() == before
    assert (rejected.state, rejected.message) == (
        batch.REJECTED,
        "not started: file: the file holds no records",
    )
    assert rejected.errors == (
        {"code": "empty_file", "field": "file", "message": "the file holds no records"},
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.state = batch.COMPLETED  # type: ignore[misc]


def test_a_job_report_keeps_the_order_the_timings_came_in() -> None:
    """A lost manifest has no ``started`` yet: SageMaker's times land in the order it gives them, as the
    dict-built status function wrote them."""
    lost = Manifest(run_id="r", model="m", state=batch.INCOMPLETE, message="", input={})
    reported = lost.job_reported(
        {"name": "j", "arn": "a"},
        created="2026-11-30T10:11:13.000000Z",
        started="2026-11-30T10:13:13.000000Z",
        ended="2026-11-30T10:31:13.000000Z",
    )
    assert list(reported.timings) == ["received", "created", "started", "ended", "seconds"]
    assert reported.timings["seconds"] == 1200.0
    started = lost.started({"name": "j", "arn": "a"}).job_reported(
        {"name": "j", "arn": "a"}, created="2026-11-30T10:11:13.000000Z", started=None, ended=None
    )
    assert list(started.timings) == ["received", "started", "created", "seconds"]
    assert started.timings["seconds"] is None
