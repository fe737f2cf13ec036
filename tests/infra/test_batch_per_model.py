"""A model's batch parts are its own stack's; the shared batch pipeline names no model.

The shared stack holds the inbox, the functions, the tables and the dashboard of totals, the same for 2
or 6 models; each model's stack holds the SageMaker model its transform jobs run (role, tarball), its
inbox output, its batch dashboard groups and the registry entry the functions read it from at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambda_handlers.batch_aws import BatchModel
from mdk.bundle import batch_topology
from mdk_runtime import batch
from tests.infra.conftest import Synth, dumps, resources, synth_config, write_config


def models_config(names: list[str]) -> str:
    """Lambda copies of iris taking batch files; every other one keeps a prediction store."""
    lines = ["project: fleet", "models:"]
    for index, name in enumerate(names):
        store = ", id_field: id, store: {ttl_days: 9}" if index % 2 else ""
        lines += [
            f"  - name: {name}",
            "    artifact: MODELS/iris/v1/model.onnx",
            "    runtime: lambda",
            f"    batch: {{instance_type: ml.c5.xlarge, max_payload_mb: 2{store}}}",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def two_and_six(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synth, Synth]:
    found = []
    for names in (["fleet0", "fleet1"], [f"fleet{i}" for i in range(6)]):
        directory = tmp_path_factory.mktemp(f"fleet-{len(names)}")
        found.append(synth_config(write_config(directory, models_config(names)), directory / "out"))
    return found[0], found[1]


def _template_file(synth: Synth, stack: str) -> bytes:
    return (synth.outdir / f"{stack}.template.json").read_bytes()


def _file_assets(synth: Synth, stack: str) -> dict[str, Any]:
    assets = json.loads((synth.outdir / f"{stack}.assets.json").read_text())
    return {digest: asset["source"] for digest, asset in assets["files"].items()}


def test_the_shared_stack_is_the_same_for_two_or_six_batch_models(two_and_six: tuple[Synth, Synth]) -> None:
    """Adding models (with batch, with stores) adds model stacks only: the shared template and its
    assets (the functions' code) are byte for byte the same, so no shared update, whatever the count."""
    two, six = two_and_six
    assert _template_file(two, "fleet-dev-shared") == _template_file(six, "fleet-dev-shared")
    assert _file_assets(two, "fleet-dev-shared").keys() == _file_assets(six, "fleet-dev-shared").keys()
    assert "fleet0" not in dumps(six.shared_json)  # no model is named (project fleet, models fleet<n>)
    assert not resources(six.shared_json, "AWS::SageMaker::Model")


def _rendered(value: Any) -> str:
    """A CloudFormation string value with its tokens written as ``<...>`` (what they resolve to)."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_rendered(p) for p in parts)
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}.{value['Fn::GetAtt'][1]}>"
    if "Fn::ImportValue" in value:
        return f"<import {value['Fn::ImportValue']}>"
    if "Fn::Select" in value:
        return f"<select {value['Fn::Select'][0]} of {_rendered(value['Fn::Select'][1])}>"
    if "Fn::Split" in value:
        return f"<split {value['Fn::Split'][0]} {_rendered(value['Fn::Split'][1])}>"
    raise AssertionError(f"no rendering of {value}")


def test_a_models_entry_names_its_own_transform_model_as_the_functions_read_it(
    two_and_six: tuple[Synth, Synth],
) -> None:
    _, six = two_and_six
    for name in ("fleet0", "fleet1"):
        template = six.model_json(name)
        [(model_id, transform)] = [
            (k, v)
            for k, v in resources(template, "AWS::SageMaker::Model").items()
            if k.startswith(f"BatchModel{name}")
        ]
        [entry] = [
            p["Properties"]
            for p in resources(template, "AWS::SSM::Parameter").values()
            if p["Properties"]["Name"] == f"/mdk/fleet/dev/models/{name}"
        ]
        # what the trigger reads: the entry as CloudFormation writes it, parsed by the function's code
        model = BatchModel.from_entry(json.loads(_rendered(entry["Value"])))
        assert model is not None
        assert model.sagemaker_model == f"<{model_id}.ModelName>"  # this stack's own SageMaker model
        expected = batch_topology(six.config.model(name), f"<{model_id}.ModelName>")
        assert expected is not None
        assert (model.instance_type, model.max_payload_mb, model.store) == (
            "ml.c5.xlarge",
            2,
            name == "fleet1",
        )
        assert (model.id_field, model.store_ttl_days) == (expected.id_field, expected.store_ttl_days)
        # its role may read its staged inputs and write its results in the shared bucket, by the export
        role_id = transform["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
        grants = dumps(
            [
                p["Properties"]["PolicyDocument"]
                for p in resources(template, "AWS::IAM::Policy").values()
                if {"Ref": role_id} in p["Properties"]["Roles"]
            ]
        )
        assert f'{{"Fn::ImportValue": "fleet-dev-batch-bucket"}}, "/staging/{name}/*"' in grants
        assert f'{{"Fn::ImportValue": "fleet-dev-batch-bucket"}}, "/results/{name}/*"' in grants
        assert template["Resources"][role_id]["Properties"]["Path"] == "/mdk/fleet/dev/batch/"
        [inbox] = [o for k, o in template["Outputs"].items() if k.startswith(f"BatchModel{name}Inbox")]
        assert _rendered(inbox["Value"]) == f"s3://<import fleet-dev-batch-bucket>/incoming/{name}/"


def _dashboard(template: dict[str, Any]) -> str:
    [dashboard] = resources(template, "AWS::CloudWatch::Dashboard").values()
    return _rendered(dashboard["Properties"]["DashboardBody"])


def test_each_models_dashboard_has_its_batch_runs_and_the_shared_one_totals(
    two_and_six: tuple[Synth, Synth],
) -> None:
    _, six = two_and_six
    for name in ("fleet0", "fleet3"):
        body = json.loads(_dashboard(six.model_json(name)))
        titles = [w["properties"].get("title") for w in body["widgets"]]
        assert f"{name}: batch runs" in titles
        assert f"{name}: batch records" in titles
        metrics = json.dumps([w["properties"].get("metrics") for w in body["widgets"]])
        for metric in (batch.RUNS_STARTED, batch.RUNS_FAILED, batch.RECORDS_IN, batch.STORED):
            assert (
                f'["{batch.NAMESPACE}", "{metric}", "Model", "{name}", "service", "{batch.SERVICE}"'
                in metrics
            )
    shared = json.loads(_dashboard(six.shared_json))
    expressions = [
        m[0]["expression"]
        for w in shared["widgets"]
        for m in w["properties"].get("metrics") or []
        if isinstance(m[0], dict) and "expression" in m[0]
    ]
    search = f'SEARCH(\'{{{batch.NAMESPACE},Model,service}} MetricName="{batch.RUNS_STARTED}"'
    assert any(e.startswith(f"SUM({search}") for e in expressions), expressions
    assert any(batch.RUNS_REJECTED in e and "SUM(" not in e for e in expressions)  # by model, as found
    assert '"Model"' not in json.dumps(shared)  # no metric of any one model


def test_a_model_without_batch_has_no_batch_parts(tmp_path: Path) -> None:
    text = models_config(["fleet0"]) + (
        "  - name: dark\n    artifact: MODELS/iris/v1/model.onnx\n    runtime: lambda\n    batch: {enabled: false}\n"
    )
    synth = synth_config(write_config(tmp_path, text), tmp_path / "out", with_nag=False)
    off = synth.model_json("dark")
    assert not resources(off, "AWS::SageMaker::Model")
    assert "batch-bucket" not in dumps(off)
    assert "batch runs" not in _dashboard(off)
