"""The deployment's registry in SSM (see :mod:`mdk.registry`): what ``mdk`` reads to find a model's
function, alias, deployment group, endpoint, alarms, API and batch bucket, and what the batch functions
read at run time (the model's transform SageMaker model and batch settings); and each Lambda model's
shadow setting, which the function reads at run time."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from mdk.bundle import batch_topology
from mdk.config import ModelConfig
from mdk.registry import (
    SHADOW_OFF,
    BatchTopology,
    Deployed,
    LambdaTopology,
    SageMakerTopology,
    model_parameter,
    shadow_parameter,
)
from stacks import nag
from stacks.lambda_model import ALIAS, LambdaModel
from stacks.sagemaker_model import SageMakerModel
from stacks.settings import DeploySettings


class Registry(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: DeploySettings, api_auth: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.api_auth = api_auth

    def shadow_setting(self, served: LambdaModel) -> ssm.StringParameter:
        """The model's shadow setting (off at deploy); the live function reads it, ``mdk shadow`` writes it.

        The function may read it and invoke other versions of itself (the candidate); a separate policy,
        so the function does not depend on a statement that names it.
        """
        name = served.model.name
        parameter = ssm.StringParameter(
            self,
            f"Shadow-{name}",
            parameter_name=shadow_parameter(self.settings.project, self.settings.stage, name),
            string_value=Stack.of(self).to_json_string(SHADOW_OFF),
            description=f"mdk shadow testing of {name}: candidate version and sample (mdk shadow start/stop)",
        )
        parameter.grant_read(served.function)
        served.function.add_environment("MDK_SHADOW_PARAMETER", parameter.parameter_name)
        assert served.function.role is not None
        policy = iam.Policy(
            self,
            f"Mirror-{name}",
            statements=[
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"], resources=[f"{served.function.function_arn}:*"]
                )
            ],
            roles=[served.function.role],
        )
        function_id = Stack.of(self).get_logical_id(served.function.node.default_child)  # type: ignore[arg-type]
        nag.acknowledge(
            policy,
            nag.Acknowledged(
                f"AwsSolutions::AwsSolutions-IAM5[Resource::<{function_id}.Arn>:*]", nag.SHADOW_MIRROR_REASON
            ),
        )
        return parameter

    def add(self, deployed: Deployed) -> ssm.StringParameter:
        deployed.api_auth = self.api_auth
        return ssm.StringParameter(
            self,
            f"Model-{deployed.model}",
            parameter_name=model_parameter(self.settings.project, self.settings.stage, deployed.model),
            string_value=Stack.of(self).to_json_string(deployed.to_json()),
            description=f"mdk: where model {deployed.model} runs (read by the mdk CLI)",
        )

    def add_lambda(
        self,
        served: LambdaModel,
        *,
        api_url: str,
        shadow: ssm.StringParameter,
        batch_bucket: str | None,
        transform_model: str | None = None,
    ) -> ssm.StringParameter:
        """The model's entry; it names its shadow setting literally (known at synth), and is created
        after it, so `mdk shadow` never finds an entry without its setting. ``transform_model``: the
        SageMaker model its transform jobs run (None: no batch)."""
        group = served.deployment_group
        entry = self.add(
            Deployed(
                model=served.model.name,
                runtime="lambda",
                version=served.spec.version,
                api_url=api_url,
                alarms=[a.alarm_name for a in served.rollback_alarms],
                shadow_parameter=shadow_parameter(
                    self.settings.project, self.settings.stage, served.model.name
                ),
                lambda_=LambdaTopology(
                    function_name=served.function.function_name,
                    alias=ALIAS,
                    codedeploy_application=group.application.application_name,
                    deployment_group=group.deployment_group_name,
                ),
                batch_bucket=batch_bucket,
                batch=_batch(served.model, transform_model),
            )
        )
        entry.node.add_dependency(shadow)
        return entry

    def add_sagemaker(
        self,
        served: SageMakerModel,
        *,
        api_url: str,
        batch_bucket: str | None,
        transform_model: str | None = None,
    ) -> ssm.StringParameter:
        alarms = [a.alarm_name for a in served.rollback_alarms]
        return self.add(
            Deployed(
                model=served.model.name,
                runtime="sagemaker",
                version=served.spec.version,
                api_url=api_url,
                alarms=alarms,
                shadow_parameter="",
                sagemaker=SageMakerTopology(
                    endpoint_name=served.endpoint_name, variants=served.variant_names, rollback_alarms=alarms
                ),
                batch_bucket=batch_bucket,
                batch=_batch(served.model, transform_model),
            )
        )


def _batch(model: ModelConfig, transform_model: str | None) -> BatchTopology | None:
    return batch_topology(model, transform_model) if transform_model is not None else None
