"""``<project>-<stage>-access``: the consumers' API keys and usage plans (``api.auth: api_key``).

One key and one plan per consumer (``api.consumers``, or the one default consumer of every model), each
plan listing the API stages of that consumer's models only, every route throttled at the consumer's rate,
and its daily quota (stacks/access.py). Each model stack exports its API's id by a name the kit chooses
(``<prefix>-model-<name>-api-id``); this stack imports those and depends on the model stacks, so it
deploys after them, and a change of consumers is an update of this stack alone.

A consumer is three resources (key, plan, membership) and one output (its key's id): CloudFormation's 500
resources and 200 outputs per template ("CloudFormation quotas",
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html) fit 166 and
200 consumers, and API Gateway allows 300 usage plans per Region. So the consumers go
:data:`CONSUMERS_PER_STACK` to a stack: ``<prefix>-access``, then ``<prefix>-access-2`` past 150.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from mdk.config import Consumer, KitConfig
from stacks.access import ConsumerPlans, ModelStage, api_id_export
from stacks.model_stack import ModelStack
from stacks.settings import DeploySettings

CONSUMERS_PER_STACK = 150  # 450 resources and 150 outputs of a template's 500 and 200


def access_stack_names(first: str, consumers: int) -> list[str]:
    """The access stacks of ``consumers`` consumers: ``first`` (``<prefix>-access``), ``first-2``, ..."""
    count = -(-consumers // CONSUMERS_PER_STACK)
    return [first if i == 0 else f"{first}-{i + 1}" for i in range(count)]


class AccessStack(cdk.Stack):
    """``consumers``' keys and plans (default: every consumer of the config). Exposes ``plans`` (a
    :class:`~stacks.access.ConsumerPlans`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: KitConfig,
        settings: DeploySettings,
        model_stacks: Sequence[ModelStack],
        consumers: Sequence[Consumer] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"mdk {settings.prefix}: API keys and usage plans, one per consumer",
            **kwargs,
        )
        consumers = config.consumers if consumers is None else consumers
        used = {m for c in consumers for m in c.models}
        stages: dict[str, ModelStage] = {}
        for stack in model_stacks:
            if stack.model.name not in used:
                continue
            self.add_stack_dependency(stack)  # the exports it imports exist first
            name = stack.model.name
            stages[name] = ModelStage(
                rest_api_id=cdk.Fn.import_value(api_id_export(settings.prefix, name)),
                stage_name=settings.stage,
                routes=tuple(
                    sorted((method.resource.path, method.http_method) for method in stack.api.api.methods)
                ),
            )
        self.plans = ConsumerPlans(
            self, "Consumers", consumers=consumers, stages=stages, prefix=settings.prefix
        )
