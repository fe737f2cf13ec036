"""``<project>-<stage>-access``: the consumers' API keys and usage plans (``api.auth: api_key``).

One key and one plan per consumer (``api.consumers``, or the one default consumer of every model), each
plan listing the API stages of that consumer's models only, every route throttled at the consumer's rate,
and its daily quota (stacks/access.py). Each model stack exports its API's id by a name the kit chooses
(``<prefix>-model-<name>-api-id``); this stack imports those and depends on the model stacks, so it
deploys after them, and a change of consumers is an update of this stack alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from mdk.config import KitConfig
from stacks.access import ConsumerPlans, ModelStage, api_id_export
from stacks.model_stack import ModelStack
from stacks.settings import DeploySettings


class AccessStack(cdk.Stack):
    """Exposes ``plans`` (a :class:`~stacks.access.ConsumerPlans`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: KitConfig,
        settings: DeploySettings,
        model_stacks: Sequence[ModelStack],
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"mdk {settings.prefix}: API keys and usage plans, one per consumer",
            **kwargs,
        )
        stages: dict[str, ModelStage] = {}
        for stack in model_stacks:
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
            self, "Consumers", consumers=config.consumers, stages=stages, prefix=settings.prefix
        )
