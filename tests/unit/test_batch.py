"""The batch pieces every side shares: names, line counting, preflight, output tally, reconciliation."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdk.bundle import batch_topology
from mdk.config import ConfigError, parse_config
from mdk_runtime import batch
from mdk_runtime.batch import BatchInputError
from mdk_runtime.manifest import Manifest
from mdk_runtime.records import split_lines

REPO = Path(__file__).resolve().parents[2]
CREATED = datetime(2026, 11, 29, 10, 15, 2, tzinfo=UTC)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(
    st.lists(st.sampled_from([b"[1,2]", b"", b"  ", b"x\r", b'{"a":1}', b"\r"]), max_size=30),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_a_file_has_as_many_records_as_the_container_reads(
    lines: list[bytes], final_newline: bool, cuts: list[int]
) -> None:
    """However S3 cuts the stream, the trigger counts the lines the container will answer."""
    body = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    scan = batch.scan_lines(pieces(body, cuts))
    assert scan.lines == len(split_lines(body))
    assert list(batch.iter_lines(pieces(body, cuts))) == split_lines(body)


def test_scan_reports_the_longest_line_and_blank_ones() -> None:
    scan = batch.scan_lines([b"ab\n\nabcdef\r\nx"])
    assert (scan.lines, scan.blank_lines, scan.longest_bytes, scan.longest_line) == (4, 1, 6, 3)
    assert scan.first_line == b"ab"
    assert scan.to_json() == {"lines": 4, "bytes": 13, "blank_lines": 1, "longest_line_bytes": 6}


def test_gzip_is_read_through_and_bad_gzip_is_named() -> None:
    data = b"1,2\n3,4\n"
    assert b"".join(batch.chunks(io.BytesIO(gzip.compress(data)), gzipped=True, size=3)) == data
    with pytest.raises(BatchInputError, match="not valid gzip"):
        list(batch.chunks(io.BytesIO(b"plain"), gzipped=True))


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/iris/a.jsonl", ("iris", "a.jsonl")),
        ("incoming/iris/2026/11/a b.csv", ("iris", "2026/11/a b.csv")),
    ],
)
def test_inbox_keys(key: str, expected: tuple[str, str]) -> None:
    assert batch.parse_inbox_key(key) == expected


@pytest.mark.parametrize(
    "key", ["incoming/a.jsonl", "results/iris/a.jsonl", "incoming//a.jsonl", "incoming/iris/"]
)
def test_keys_outside_a_models_inbox_are_refused(key: str) -> None:
    with pytest.raises(BatchInputError) as caught:
        batch.parse_inbox_key(key)
    assert caught.value.field == "key"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jsonl", ("application/jsonlines", False)),
        ("A.NDJSON", ("application/jsonlines", False)),
        ("a.csv.gz", ("text/csv", True)),
    ],
)
def test_formats_from_the_file_name(name: str, expected: tuple[str, bool]) -> None:
    assert batch.input_format(name) == expected


def test_run_ids_and_job_names_are_deterministic_and_fit() -> None:
    run = batch.run_id("b", "incoming/iris/a.jsonl", "0055AED6DCD90281E5", CREATED)
    assert run == batch.run_id("b", "incoming/iris/a.jsonl", "0055AED6DCD90281E5", CREATED)
    assert run.startswith("20261129T101502Z-")
    assert run != batch.run_id("b", "incoming/iris/a.jsonl", "0055AED6DCD90281E6", CREATED)
    name = batch.job_name("a-very-long-project-name-dev", "a-long-model-name-indeed", run)
    assert len(name) <= 63
    assert name.startswith(batch.job_prefix("a-very-long-project-name-dev"))
    assert name.endswith(run)


JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # CreateTransformJob's TransformJobName
# Deployment names as the kit makes them (<project>-<stage>: a DNS-style project name, a stage of
# letters and digits), from a small alphabet so that heads, hyphens and lengths collide often.
projects = st.from_regex(r"[a-c](?:[a-c0-9-]{0,30}[a-c0-9])?", fullmatch=True)
stages = st.from_regex(r"[a-c][a-c0-9]{0,11}", fullmatch=True)
deployments = st.builds(lambda project, stage: f"{project}-{stage}", projects, stages)
models = st.from_regex(r"[a-c](?:[a-c0-9-]{0,30}[a-c0-9])?", fullmatch=True)


@given(deployments, deployments, models)
def test_no_deployments_prefix_starts_another_deployments_job_names(a: str, b: str, model: str) -> None:
    """The status rule and the IAM grants match job names by prefix: each deployment sees only its own."""
    run = batch.run_id("b", "incoming/x/a.jsonl", "0055AED6DCD90281E5", CREATED)
    prefix_a, prefix_b, job_b = batch.job_prefix(a), batch.job_prefix(b), batch.job_name(b, model, run)
    assert JOB_NAME.match(job_b)
    assert len(job_b) <= batch.JOB_NAME_MAX
    assert batch.is_own_job(b, job_b)
    if a != b:
        assert not prefix_a.startswith(prefix_b)
        assert not prefix_b.startswith(prefix_a)
        assert not job_b.startswith(prefix_a)
        assert not batch.is_own_job(a, job_b)


def test_stages_of_a_long_project_name_get_their_own_prefixes() -> None:
    dev, prod = batch.job_prefix("customer-churn-model-dev"), batch.job_prefix("customer-churn-model-prod")
    assert dev != prod
    assert dev.startswith("customerchu-")
    assert not batch.job_name("customer-churn-model-prod", "iris", "r").startswith(dev)
    # A name that starts like another one's prefix is not taken for it.
    assert not batch.job_prefix(f"{dev}x").startswith(dev)
    assert not batch.job_prefix("abc-d").startswith(batch.job_prefix("abc"))


def test_preflight_limits() -> None:
    # MB as 10^6 bytes: the stricter reading of SageMaker's MaxPayloadInMB
    fits = batch.scan_lines([b"x" * 1_000_000 + b"\n"])
    assert batch.preflight(fits, "application/jsonlines", max_payload_mb=1) == []
    scan = batch.scan_lines([b"x" * 1_000_001 + b"\n"])
    [problem] = batch.preflight(scan, "application/jsonlines", max_payload_mb=1)
    assert (problem.code, problem.field) == ("record_too_large", "line 1")
    assert batch.preflight(batch.scan_lines([b'{"id": 1, "features": [1]}\n']), "application/jsonlines",
                           max_payload_mb=1, id_field="id", features_field="features") == []  # fmt: skip


def test_the_file_check_reports_what_it_learnt_before_a_refusal() -> None:
    """The trigger's and the local runner's one check: a refusal on the way is a problem, and the
    manifest's input gets the members learnt until then (format first, the counts after the pass)."""
    opened: list[str] = []

    def opener(data: bytes) -> Any:
        def open_file() -> io.BytesIO:
            opened.append("x")
            return io.BytesIO(data)

        return open_file

    good = batch.check_file("a.jsonl", opener(b"[1]\n[2]\n"), max_payload_mb=1)
    assert (good.content_type, good.gzipped, good.problems) == ("application/jsonlines", False, [])
    assert good.fields == {
        "format": "application/jsonlines", "compression": None,
        "lines": 2, "bytes": 8, "blank_lines": 0, "longest_line_bytes": 3,
    }  # fmt: skip
    bad_gzip = batch.check_file("a.csv.gz", opener(b"not gzip"), max_payload_mb=1)
    assert [p.code for p in bad_gzip.problems] == ["bad_gzip"]
    assert bad_gzip.fields == {"format": "text/csv", "compression": "gzip"}
    wrong = batch.check_file("a.txt", opener(b"1\n"), max_payload_mb=1)
    assert ([p.code for p in wrong.problems], wrong.fields) == (["unsupported_format"], {})
    assert len(opened) == 2  # a file of the wrong type is never read
    empty = batch.check_file("a.csv", opener(b""), max_payload_mb=1)
    assert [p.code for p in empty.problems] == ["empty_file"]


def test_tally_counts_errors_in_plain_and_joined_output() -> None:
    out = b"\n".join(
        [
            b'{"label": "setosa"}',
            b'{"error": {"code": "invalid_input", "message": "bad"}}',
            b"",  # between two requests' answers
            b'{"id": 3, "SageMakerOutput": {"error": {"code": "malformed_request", "message": "x"}}}',
            b'{"id": 4, "SageMakerOutput": {"label": "error"}}',
            b"{broken",
        ]
    )
    tally = batch.tally_output([out])
    assert tally.lines == 5
    assert tally.error_lines == 2
    assert tally.unreadable_lines == 0  # no "error" key on the broken line: counted as output only
    assert tally.errors_by_code == {"invalid_input": 1, "malformed_request": 1}
    assert [e["line"] for e in tally.first_errors] == [2, 3]


def test_reconcile_needs_every_line() -> None:
    manifest = Manifest(run_id="r", model="m", state=batch.IN_PROGRESS, message="", input={"lines": 3})
    full = manifest.reconcile(batch.tally_output([b"1\n2\n3\n"]), files=["s3://b/o.out"])
    assert (full.state, full.message) == (batch.COMPLETED, "3 lines scored")
    short = manifest.reconcile(batch.tally_output([b"1\n2\n"]), files=["s3://b/o.out"])
    assert short.state == batch.INCOMPLETE
    assert "2 of 3 lines (1 missing)" in short.message
    assert manifest.reconcile(batch.OutputTally(), files=[]).state == batch.INCOMPLETE
    extra = batch.tally_output([b"1\n2\n3\n4\n"])
    assert "no longer line up" in manifest.reconcile(extra, files=["x"]).message


def test_times_from_events_and_apis() -> None:
    # SageMaker's state change events: epoch milliseconds.
    assert batch.iso(1796033473000, epoch="ms") == "2026-11-30T10:11:13.000000Z"
    assert batch.iso("1796033473000", epoch="ms") == "2026-11-30T10:11:13.000000Z"
    # SageMaker's JSON API (DescribeTransformJob on the wire): epoch seconds with a fraction.
    assert batch.iso(1796033473.25, epoch="s") == "2026-11-30T10:11:13.250000Z"
    assert (
        batch.iso(datetime(2026, 11, 30, 10, 11, 13, tzinfo=UTC), epoch="s") == "2026-11-30T10:11:13.000000Z"
    )
    assert batch.iso("2026-11-29T10:15:02Z", epoch="ms") == "2026-11-29T10:15:02.000000Z"
    assert batch.iso(None, epoch="ms") is None
    assert batch.iso("soon", epoch="ms") == "soon"


def test_event_time_is_iso_text_or_moto_seconds_never_milliseconds() -> None:
    """EventBridge's ``time`` is ISO text on AWS; moto's S3 notifications put epoch seconds there (a run
    id once read them as milliseconds: dated January 1970)."""
    assert batch.event_time("2026-11-29T10:15:02Z") == "2026-11-29T10:15:02.000000Z"
    assert batch.event_time(1796033473.5) == "2026-11-30T10:11:13.500000Z"
    assert batch.event_time(1796033473) == "2026-11-30T10:11:13.000000Z"
    assert batch.seconds_between("2026-11-29T10:00:00Z", "2026-11-29T10:20:00Z") == 1200.0


def model(
    batch_settings: dict[str, object], artifact: str = "models/iris/v1/model.onnx"
) -> dict[str, object]:
    return {"name": "m", "artifact": artifact, "runtime": "lambda", "batch": batch_settings}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"store": {}}, "models[0].batch: store needs id_field"),
        (
            {"max_payload_mb": 50, "max_concurrent_transforms": 3},
            "must be <= 100 (SageMaker's limit), got 150",
        ),
        ({"id_field": "x", "features_field": "x"}, "id_field and features_field must differ"),
        ({"id_field": "1bad"}, "models[0].batch.id_field"),
        ({"invocation_timeout_s": 4000}, "models[0].batch.invocation_timeout_s"),
    ],
)
def test_batch_config_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"models": [model(settings)]}, base_dir=REPO, check_models=False)
    assert message in str(caught.value)


def test_batch_settings_reach_the_functions() -> None:
    config = parse_config(
        {
            "project": "p",
            "models": [model({"id_field": "id", "store": {"ttl_days": 7}, "max_payload_mb": 2})],
        },
        base_dir=REPO,
        check_models=False,
    )
    topology = batch_topology(config.models[0], "the-transform-model")
    assert topology is not None
    settings = asdict(topology)  # the batch member of the model's registry entry
    assert settings == {
        "transform_model": "the-transform-model",
        "instance_type": "ml.m5.large",
        "instance_count": 1,
        "max_payload_mb": 2,
        "max_concurrent_transforms": 1,
        "invocation_timeout_s": 600,
        "invocation_retries": 1,
        "id_field": "id",
        "features_field": "features",
        "store": True,
        "store_ttl_days": 7,
    }
    assert json.dumps(settings)


@given(
    st.lists(
        st.one_of(
            st.lists(st.floats(0, 8, width=32), min_size=4, max_size=4).map(lambda r: json.dumps(r).encode()),
            st.sampled_from([b"", b"{bad", b"[1, 2]", b'{"x": 1}', b"[1, 2, 3, 4]"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_the_fast_json_lines_writer_writes_what_the_general_one_does(
    iris_service: Any, lines: list[bytes]
) -> None:
    """Classifier rows from templates are byte for byte the rows the object path writes."""
    from mdk_runtime.records import decode_jsonl, dump_jsonl, jsonl_answers, predictions

    model = iris_service.model
    records = decode_jsonl(b"\n".join(lines) + b"\n", model.signature)
    outputs = [model.run(group.feeds, group.n) for _, group in records.groups]
    fast = jsonl_answers(model.signature, records, outputs)
    assert fast == dump_jsonl(predictions(model.signature, records, outputs))
    assert len(fast.splitlines()) == len(lines)


def test_the_batch_layer_holds_every_runtime_module_the_functions_import() -> None:
    """The batch functions get mdk_runtime from their layer only: a module missing from it fails their init."""
    import ast

    from mdk.bundle import BATCH_MODULES, HANDLERS_DIR, LAYER_RUNTIME_MODULES, RUNTIME_DIR

    layer = {name.removesuffix(".py") for name in LAYER_RUNTIME_MODULES}
    sources = [HANDLERS_DIR / name for name in BATCH_MODULES] + [RUNTIME_DIR / f"{m}.py" for m in layer]
    needed: set[str] = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mdk_runtime"):
                parts = node.module.split(".")
                needed |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
    assert needed - layer == set()
    assert "instances" in needed  # the trigger decides the volume key from the shared family rule


def test_the_trigger_and_the_endpoints_share_one_local_storage_rule() -> None:
    """Every family the endpoint configs send no KMS key for gets no volume key in a transform job."""
    from lambda_handlers.batch_aws import BatchModel
    from lambda_handlers.batch_trigger import transform_job_request
    from mdk_runtime import instances
    from stacks import sagemaker_model

    assert vars(sagemaker_model)["LOCAL_STORAGE_FAMILIES"] is instances.LOCAL_STORAGE_FAMILIES
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for family in sorted(instances.LOCAL_STORAGE_FAMILIES | {"m5", "c5", "r5", "g4ad", "p3"}):
        model = BatchModel(
            name="iris", version="1", sagemaker_model="m", instance_type=f"ml.{family}.xlarge",
            instance_count=1, max_payload_mb=6, max_concurrent_transforms=1, invocation_timeout_s=60,
            invocation_retries=1, id_field=None, features_field="features", store=False, store_ttl_days=None,
        )  # fmt: skip
        request = transform_job_request(
            model, job_name="j", run="r", bucket="b", staged="s", results="r/", content_type="text/csv",
            gzipped=False, data_key_arn=key,
        )  # fmt: skip
        volume_key = request["TransformResources"].get("VolumeKmsKeyId")
        assert volume_key == (None if family in instances.LOCAL_STORAGE_FAMILIES else key), family
        assert request["TransformOutput"]["KmsKeyId"] == key
