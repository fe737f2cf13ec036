"""Deploy the synthesized stacks onto the local AWS: what ``cdk deploy`` does, against moto.

1. synthesize the CDK app (``app.py``, with ``cdk.json``'s context) into a fresh cloud assembly;
2. publish its file assets to the local bootstrap bucket and keep every asset (image build contexts,
   function code, layers) by hash under ``<work>/assets``, so the runner can start any version later;
3. create or update each stack through moto's CloudFormation with the prepared template
   (:mod:`mdk.local.cloud.template`);
4. record which code each function version runs (:func:`~mdk.local.cloud.services.lambda_.record_code`);
5. complete what moto's CloudFormation skips, and set what it drops, by dispatching each resource to the
   service module registered for its type (:mod:`mdk.local.cloud.registry`), with the properties
   resolved against the deployed stack: aliases, permissions, alarms, CodeDeploy applications and
   deployment groups, the API stage, gateway responses, autoscaling, resource policies. A changed
   alias that a CodeDeploy deployment group manages goes to the local CodeDeploy
   (:mod:`mdk.local.cloud.services.codedeploy`) instead of moving.

This module is the orchestrator only; what each type needs is in its service's module.
"""

from __future__ import annotations

import graphlib
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.registry import (
    AMENDERS,
    COMPLETERS,
    AliasChange,
    Completion,
    DeployError,
    StackDeployment,
)
from mdk.local.cloud.services import apigateway, autoscaling, cloudwatch, codedeploy, lambda_, sns, sqs
from mdk.local.cloud.services import s3 as s3_service
from mdk.local.cloud.services.lambda_ import FunctionRunner
from mdk.local.cloud.template import Prepared, prepare

__all__ = ["REPO", "AliasChange", "DeployError", "Deployer", "StackDeployment"]
log = logging.getLogger("mdk.local")
REPO = Path(__file__).resolve().parents[3]
#: the service modules whose CloudFormation types the deployer completes (importing them registers them)
SERVICES = (apigateway, autoscaling, cloudwatch, codedeploy, lambda_, s3_service, sns, sqs)


class Deployer:
    def __init__(
        self,
        *,
        session: Any,
        region: str,
        work: Path,
        runner: FunctionRunner,
        config: Path,
        stage: str,
        repo: Path = REPO,
    ) -> None:
        self.session = session
        self.region = region
        self.work = work
        self.runner = runner
        self.config = config
        self.stage = stage
        self.repo = repo
        self._clients: dict[str, Any] = {}
        self.deploys = 0
        self.images: dict[str, Path] = {}  # image asset hash -> build context, for the serving containers
        self.stack_names: list[str] = []
        self.last_templates: dict[str, dict[str, Any]] = {}  # stack -> the synthesized template last deployed
        #: called with each stack's alias changes that a deployment group manages (the local CodeDeploy)
        self.on_alias_change: Callable[[StackDeployment, AliasChange], None] | None = None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    # ------------------------------------------------------------------------------------- synth

    def synth(self) -> Path:
        self.deploys += 1
        out = self.work / "cdk.out" / str(os.getpid()) / str(self.deploys)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        context = json.loads((self.repo / "cdk.json").read_text()).get("context", {})
        context.update({"config": str(self.config), "stage": self.stage})
        env = {
            **os.environ,
            "CDK_OUTDIR": str(out),
            "CDK_CONTEXT_JSON": json.dumps(context),
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        }
        done = subprocess.run(
            [sys.executable, "app.py"], cwd=self.repo, env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise DeployError(f"synth failed (exit {done.returncode}):\n{done.stderr.strip()[-4000:]}")
        return out

    # ------------------------------------------------------------------------------------ deploy

    def deploy(self) -> list[StackDeployment]:
        assembly = self.synth()
        manifest = json.loads((assembly / "manifest.json").read_text())
        results = []
        for name, artifact in _stacks_in_order(manifest):
            template = json.loads((assembly / artifact["properties"]["templateFile"]).read_text())
            self.last_templates[name] = template
            assets = self._publish(assembly, name)
            if name not in self.stack_names:
                self.stack_names.append(name)
            results.append(self._deploy_stack(name, template, assets))
        return results

    def _publish(self, assembly: Path, stack: str) -> dict[str, dict[str, Any]]:
        """Upload file assets to the local bootstrap bucket; keep every asset by hash. Returns them."""
        path = assembly / f"{stack}.assets.json"
        if not path.exists():
            return {}
        document = json.loads(path.read_text())
        s3 = self.client("s3")
        kept: dict[str, dict[str, Any]] = {}
        for digest, asset in document.get("files", {}).items():
            source = assembly / asset["source"]["path"]
            if source.name.endswith(".template.json"):
                continue
            stored = self._keep(digest, source)
            kept[digest] = {"kind": asset["source"].get("packaging", "file"), "path": stored}
            for destination in asset["destinations"].values():
                bucket = self._sub(destination["bucketName"])
                self._ensure_bucket(bucket)
                body = _zip_dir(stored) if kept[digest]["kind"] == "zip" else stored.read_bytes()
                s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)
        for digest, asset in document.get("dockerImages", {}).items():
            stored = self._keep(digest, assembly / asset["source"]["directory"])
            kept[digest] = {
                "kind": "image",
                "path": stored,
                "build_args": asset["source"].get("dockerBuildArgs", {}),
                "dockerfile": asset["source"].get("dockerFile", "Dockerfile"),
            }
            self.images[digest] = stored
        return kept

    def _keep(self, digest: str, source: Path) -> Path:
        stored = self.work / "assets" / digest
        if not stored.exists():
            tmp = stored.with_name(f".tmp-{digest}-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            if source.is_dir():
                shutil.copytree(source, tmp)
            else:
                tmp.mkdir(parents=True)
                shutil.copy2(source, tmp / source.name)
            tmp.rename(stored)
        if source.is_dir():
            return stored
        return stored / source.name

    def _sub(self, text: str) -> str:
        return (
            text.replace("${AWS::AccountId}", moto_adapter.ACCOUNT)
            .replace("${AWS::Region}", self.region)
            .replace("${AWS::Partition}", "aws")
            .replace("${AWS::URLSuffix}", "amazonaws.com")
        )

    def _ensure_bucket(self, bucket: str) -> None:
        s3 = self.client("s3")
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            kwargs: dict[str, Any] = {}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            s3.create_bucket(Bucket=bucket, **kwargs)

    def _deploy_stack(
        self, stack: str, template: dict[str, Any], assets: dict[str, dict[str, Any]]
    ) -> StackDeployment:
        prepared = prepare(template, stack, self.region)
        cfn = self.client("cloudformation")
        previous_aliases = lambda_.current_aliases(self.client("lambda"), prepared)
        body = json.dumps(prepared.template)
        capabilities = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
        try:
            existing = cfn.describe_stacks(StackName=stack)["Stacks"][0]
            created = existing["StackStatus"] in ("DELETE_COMPLETE",)
        except ClientError:
            created = True
        if not created:
            lambda_.configure_functions(self.client("lambda"), stack, prepared, self.region)
        try:
            if created:
                cfn.create_stack(StackName=stack, TemplateBody=body, Capabilities=capabilities)
            else:
                cfn.update_stack(StackName=stack, TemplateBody=body, Capabilities=capabilities)
        except ClientError as exc:
            raise DeployError(f"{stack}: the local CloudFormation refused the template: {exc}") from exc
        except Exception as exc:  # moto raises its own errors in-process for resources it cannot create
            raise DeployError(
                f"{stack}: the local CloudFormation failed: {type(exc).__name__}: {exc}"
            ) from exc
        described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        if not described["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in described["StackStatus"]:
            raise DeployError(f"{stack}: {described['StackStatus']} {described.get('StackStatusReason', '')}")
        result = StackDeployment(
            stack=stack,
            created=created,
            outputs={o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
            functions={
                k: v
                for k, v in prepared.names.items()
                if prepared_type(template, k) == "AWS::Lambda::Function"
            },
        )
        lambda_.record_code(
            self.runner, stack, template=template, prepared=prepared, assets=assets, region=self.region
        )
        self.runner.retire_unpublished(set(result.functions.values()))
        self._complete(stack, prepared, result, previous_aliases)
        return result

    # ---------------------------------------------------------- what moto's CloudFormation skips

    def _complete(
        self,
        stack: str,
        prepared: Prepared,
        result: StackDeployment,
        previous_aliases: dict[tuple[str, str], str],
    ) -> None:
        """Dispatch each resource moto skipped to its type's completer, then each resource moto created
        with dropped properties to its type's amender (after the bucket policies)."""
        ctx = Completion(self, stack, prepared, result, previous_aliases)
        codedeploy.record_settings(ctx)
        ctx.alias_groups = codedeploy.alias_groups(ctx)
        for logical, resource in prepared.deferred.items():
            kind = resource["Type"]
            completer = COMPLETERS.get(kind)
            if completer is None:
                continue
            try:
                completer(ctx, logical, ctx.resolve(resource.get("Properties", {})))
            except (ClientError, ParamValidationError, KeyError, ValueError) as exc:
                raise DeployError(f"{stack}: {kind} {logical}: {exc}") from exc
        for logical, resource in prepared.template["Resources"].items():
            kind = resource["Type"]
            amender = AMENDERS.get(kind)
            if amender is None:
                continue
            props = ctx.resolve(resource.get("Properties", {}))
            try:
                amender(ctx, logical, props)
            except ClientError as exc:
                raise DeployError(f"{stack}: {kind} {logical}: {exc}") from exc


def _stacks_in_order(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The assembly's stacks, each after the stacks it depends on (the shared stack before the models'),
    as ``cdk deploy --all`` deploys them."""
    artifacts = manifest["artifacts"]
    stacks = {n: a for n, a in artifacts.items() if a.get("type") == "aws:cloudformation:stack"}
    graph = {n: {d for d in a.get("dependencies", []) if d in stacks} for n, a in stacks.items()}
    return [(n, stacks[n]) for n in graphlib.TopologicalSorter(graph).static_order()]


def prepared_type(template: dict[str, Any], logical: str) -> str | None:
    resource = template["Resources"].get(logical)
    return None if resource is None else str(resource["Type"])


def _zip_dir(directory: Path) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()
