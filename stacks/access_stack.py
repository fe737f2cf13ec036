"""``<project>-<stage>-access``: what each consumer of the API has of its own (``api.consumers``).

- ``api_key``: one key and one usage plan per consumer (or the one default consumer of every model), each
  plan listing the API stages of that consumer's models only, every route throttled at the consumer's
  rate, and its daily quota. Each model stack exports its API's id by a name the kit chooses
  (``<prefix>-model-<name>-api-id``); this stack imports those and depends on the model stacks of its
  consumers' models, so it deploys after them.
- ``cognito``: one app client per consumer (client credentials, its models' scopes), in the user's pool,
  after the shared stack, whose resource server defines the scopes.

A change of consumers is an update of the access stacks alone (stacks/access.py has the constructs). A
consumer is at most three resources (key, plan, membership) and one output (its key's or client's id):
CloudFormation's 500 resources and 200 outputs per template ("CloudFormation quotas",
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html) fit 166 and
200, and API Gateway allows 300 usage plans per Region. So the consumers go :data:`CONSUMERS_PER_STACK` to
a stack: ``<prefix>-access``, then ``<prefix>-access-2`` past 150.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from mdk import layout
from mdk.config import Consumer, KitConfig
from stacks.access import ConsumerClients, ConsumerPlans, ModelStage, api_id_export
from stacks.model_stack import ModelStack
from stacks.settings import DeploySettings
from stacks.shared import SharedStack

CONSUMERS_PER_STACK = layout.CONSUMERS_PER_STACK  # at most 450 resources and 150 outputs of 500 and 200


class AccessStack(cdk.Stack):
    """``consumers``' keys and plans (``api_key``) or app clients (``cognito``); default: every consumer
    of the config. Exposes ``plans`` (a :class:`~stacks.access.ConsumerPlans`) or ``clients`` (a
    :class:`~stacks.access.ConsumerClients`), the other None."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: KitConfig,
        settings: DeploySettings,
        shared: SharedStack,
        model_stacks: Sequence[ModelStack],
        consumers: Sequence[Consumer] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"mdk {settings.prefix}: what each consumer has of its own (keys and plans, or "
            "app clients)",
            **kwargs,
        )
        consumers = config.consumers if consumers is None else consumers
        self.plans: ConsumerPlans | None = None
        self.clients: ConsumerClients | None = None
        if config.api.auth == "cognito":
            assert shared.scopes is not None
            self.add_stack_dependency(shared)  # the resource server defines the clients' scopes
            self.clients = ConsumerClients(self, "Consumers", scopes=shared.scopes, consumers=consumers)
            return
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
