"""The CDK stacks, built from the typed config (see ``mdk/app.py``).

One shared stack (stacks/shared.py) and one stack per model (stacks/model_stack.py): a deployment grows
by a stack per model, each far inside CloudFormation's 500 resources per template, and one model's change
or rollout is one stack's update. With consumers (``api.auth: api_key`` always has one), one more:
``<prefix>-access`` (stacks/access_stack.py), the consumers' keys and usage plans or app clients (past
150 consumers, ``<prefix>-access-2``: a template's resources and outputs are bounded).
"""

from __future__ import annotations

import aws_cdk as cdk

from mdk import layout
from mdk.config import KitConfig
from stacks.access_stack import CONSUMERS_PER_STACK, AccessStack
from stacks.model_stack import ModelStack
from stacks.settings import DeploySettings
from stacks.shared import SharedStack


def build(app: cdk.App, config: KitConfig, settings: DeploySettings) -> list[cdk.Stack]:
    """Every stack of a config, the shared one first (the access stack, if any, last); tags go on the
    whole app."""
    cdk.Tags.of(app).add("mdk:project", settings.project)
    cdk.Tags.of(app).add("mdk:stage", settings.stage)
    shared = SharedStack(app, settings.shared_stack, config=config, settings=settings)
    models = [
        ModelStack(
            app,
            settings.model_stack(model.name),
            config=config,
            model=model,
            shared=shared,
            settings=settings,
        )
        for model in config.models
    ]
    stacks: list[cdk.Stack] = [shared, *models]
    consumers = config.consumers  # api_key: at least the default one; cognito: those listed; iam: none
    for i, name in enumerate(layout.access_stacks(settings.project, settings.stage, len(consumers))):
        chunk = consumers[i * CONSUMERS_PER_STACK : (i + 1) * CONSUMERS_PER_STACK]
        stacks.append(
            AccessStack(
                app,
                name,
                config=config,
                settings=settings,
                shared=shared,
                model_stacks=models,
                consumers=chunk,
            )
        )
    return stacks
