"""The CDK stacks, built from the typed config (see ``app.py``)."""

from __future__ import annotations

import aws_cdk as cdk

from mdk.config import KitConfig
from stacks.serving import ServingStack
from stacks.settings import DeploySettings


def build(app: cdk.App, config: KitConfig, settings: DeploySettings) -> list[cdk.Stack]:
    """Every stack of a config; tags go on the whole app."""
    cdk.Tags.of(app).add("mdk:project", settings.project)
    cdk.Tags.of(app).add("mdk:stage", settings.stage)
    return [ServingStack(app, settings.stack_name("serving"), config=config, settings=settings)]
