"""Synthesizing the CDK app from a config, the way ``app.py`` does, for template assertions."""

from __future__ import annotations

import functools
import json
import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from mdk.config import KitConfig, load_config
from stacks import build, nag
from stacks.settings import DeploySettings

REPO = Path(__file__).resolve().parents[2]

# jsii runs the CDK in Node: the pinned Node 22 from package.json, as the Makefile arranges.
os.environ["PATH"] = f"{REPO / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@dataclass
class Synth:
    """One synthesized app: its config, stacks, templates (as assertions and as JSON) and output dir."""

    config: KitConfig
    stacks: list[cdk.Stack]
    templates: dict[str, Template]
    json: dict[str, dict[str, Any]]
    outdir: Path

    @functools.cached_property
    def merged_json(self) -> dict[str, Any]:
        """Every stack's resources, outputs and parameters in one template (logical ids are unique
        across the app's stacks: the constructs are named by model), for assertions that do not care
        which stack holds a resource. Cross-stack references appear as Fn::ImportValue."""
        merged: dict[str, Any] = {"Resources": {}, "Outputs": {}, "Parameters": {}}
        for template in self.json.values():
            for section, into in merged.items():
                for key, value in template.get(section, {}).items():
                    if section == "Resources" and key in into:
                        raise AssertionError(f"logical id {key} is in two stacks")
                    into[key] = value
        return merged

    @functools.cached_property
    def merged(self) -> Template:
        return Template.from_json(self.merged_json)

    @property
    def shared(self) -> Template:
        return next(t for name, t in self.templates.items() if name.endswith("-shared"))

    @property
    def shared_json(self) -> dict[str, Any]:
        return next(t for name, t in self.json.items() if name.endswith("-shared"))

    def model(self, name: str) -> Template:
        """The template of model ``name``'s stack."""
        return next(t for stack, t in self.templates.items() if stack.endswith(f"-model-{name}"))

    def model_json(self, name: str) -> dict[str, Any]:
        return next(t for stack, t in self.json.items() if stack.endswith(f"-model-{name}"))


def synth_config(
    config_path: Path | KitConfig,
    outdir: Path,
    *,
    context: dict[str, str] | None = None,
    with_nag: bool = True,
) -> Synth:
    config = config_path if isinstance(config_path, KitConfig) else load_config(config_path)
    # The feature flags of cdk.json, as `cdk synth` passes them, then the test's own context.
    flags = json.loads((REPO / "cdk.json").read_text())["context"]
    app = cdk.App(outdir=str(outdir), context={**flags, **(context or {})})
    settings = DeploySettings.from_context(app, config.project)
    settings = DeploySettings(
        project=settings.project, stage=settings.stage, destroy=settings.destroy, build_dir=outdir / "build"
    )
    stacks = build(app, config, settings)
    if with_nag:
        nag.enable(app)
    assembly = app.synth()  # raises on any cdk-nag finding that is not acknowledged
    templates = {s.stack_name: Template.from_stack(s) for s in stacks}
    as_json = {a.stack_name: a.template for a in assembly.stacks}
    return Synth(config, stacks, templates, as_json, outdir)


def write_config(directory: Path, text: str) -> Path:
    """A config file whose artifacts are the repository's example models (absolute paths)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "models.yaml"
    path.write_text(textwrap.dedent(text).replace("MODELS/", f"{REPO / 'models'}/"))
    return path


SynthFactory = Callable[..., Synth]


@pytest.fixture(scope="session")
def synth_repo_config(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The repository's models.yaml, as `npx cdk synth` builds it."""
    return synth_config(REPO / "models.yaml", tmp_path_factory.mktemp("synth-default"))


VARIANT = """
    project: acme
    api:
      auth: api_key
      throttle_rate: 20
      throttle_burst: 40
      quota_per_day: 50000
      waf: true
      waf_rate_limit: 500
    alarms:
      email: ml-oncall@example.com
    models:
      - name: iris-fast
        artifact: MODELS/iris/v2/model.onnx
        runtime: lambda
        lambda:
          memory_mb: 3538
          timeout_s: 20
          architecture: arm64
          reserved_concurrency: 50
          provisioned_concurrency: 5
        rollout:
          strategy: linear
          percent: 15
          interval_minutes: 4
          max_errors: 3
          p99_latency_ms: 250
        batch:
          instance_type: ml.c5.xlarge
          instance_count: 2
          max_payload_mb: 10
          max_concurrent_transforms: 4
          invocation_timeout_s: 120
          invocation_retries: 2
          id_field: customer_id
          features_field: measurements
          store: {ttl_days: 30}
        capture: {percent: 25, drop_fields: [customer_email], retention_days: 30}
      - name: iris-big-bang
        artifact: MODELS/iris/v1/model.onnx
        runtime: lambda
        rollout: {strategy: all_at_once}
        batch: {enabled: false}
"""


@pytest.fixture(scope="session")
def synth_variant(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """API keys, WAF, a custom linear rollout, arm64, concurrency, an e-mail subscription; stage prod."""
    directory = tmp_path_factory.mktemp("synth-variant")
    path = write_config(directory, VARIANT)
    return synth_config(path, directory / "out", context={"stage": "prod", "destroy": "true"})


SAGEMAKER_VARIANTS = """
    project: acme
    models:
      - name: scorer
        artifact: MODELS/digits/v1/model.onnx
        runtime: sagemaker
        rollout: {strategy: linear, percent: 25, interval_minutes: 3, max_errors: 2, p99_latency_ms: 80}
        sagemaker:
          instance_type: ml.m5.large
          initial_instance_count: 2
          min_instances: 2
          max_instances: 6
          target_invocations_per_instance: 500
          max_batch_size: 64
          max_batch_delay_ms: 5
          data_capture_percent: 20
          baking_minutes: 15
          network_isolation: true
          vpc: {subnet_ids: [subnet-0abc1234def567890], security_group_ids: [sg-0123456789abcdef0]}
          shadow: {name: candidate, artifact: MODELS/iris/v2/model.onnx, weight: 0.5}
      - name: ab
        artifact: MODELS/digits/v1/model.onnx
        runtime: sagemaker
        sagemaker:
          instance_type: ml.g5.xlarge
          weight: 3
          variants: [{name: challenger, artifact: MODELS/iris/v2/model.onnx, weight: 1, instance_type: ml.c5.xlarge}]
        batch: {instance_type: ml.g4dn.xlarge}
"""


@pytest.fixture(scope="session")
def synth_sagemaker(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    directory = tmp_path_factory.mktemp("synth-sagemaker")
    return synth_config(write_config(directory, SAGEMAKER_VARIANTS), directory / "out")


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def one(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
