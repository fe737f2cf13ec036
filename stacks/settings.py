"""Deployment settings that are not part of the model config: the stage and what happens on delete.

They come from CDK context (``-c stage=prod``, ``-c destroy=true``), read once in ``app.py``; stacks take
the resulting object and never read the environment themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from mdk import layout
from mdk.sources import BUILD_ROOT

STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,11}$")
REPO = BUILD_ROOT  # the checkout, or the user's project when the kit is installed


class SettingsError(ValueError):
    """A context value is invalid; the message names it and what was expected."""


@dataclass(frozen=True)
class DeploySettings:
    """Where and how a config is deployed."""

    project: str
    stage: str = "dev"
    destroy: bool = False  # dev only: delete logs and other retained data with the stack
    build_dir: Path = REPO / "build" / "cdk"  # image and function contexts written at synth

    @property
    def removal_policy(self) -> cdk.RemovalPolicy:
        return cdk.RemovalPolicy.DESTROY if self.destroy else cdk.RemovalPolicy.RETAIN

    def stack_name(self, component: str) -> str:
        """``<project>-<stage>-<component>``."""
        return f"{self.project}-{self.stage}-{component}"

    @property
    def shared_stack(self) -> str:
        """``<project>-<stage>-shared``: what every model's stack uses (stacks/shared.py)."""
        return layout.shared_stack(self.project, self.stage)

    def model_stack(self, model: str) -> str:
        """``<project>-<stage>-model-<model>``: one model's stack (stacks/model_stack.py)."""
        return layout.model_stack(self.project, self.stage, model)

    @property
    def access_stack(self) -> str:
        """``<project>-<stage>-access``: API keys and usage plans per consumer (``api_key`` auth)."""
        return layout.access_stack(self.project, self.stage)

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.stage}"

    @classmethod
    def from_context(cls, app: cdk.App, project: str) -> DeploySettings:
        stage = _text(app.node.try_get_context("stage"), "dev")
        if not STAGE_PATTERN.match(stage):
            raise SettingsError(
                "context 'stage': expected lowercase letters and digits (at most 12, a letter first), "
                f"got {stage!r}"
            )
        destroy_text = _text(app.node.try_get_context("destroy"), "false").lower()
        if destroy_text not in ("true", "false"):
            raise SettingsError(f"context 'destroy': expected true or false, got {destroy_text!r}")
        return cls(project=project, stage=stage, destroy=destroy_text == "true")


def _text(value: Any, default: str) -> str:
    return default if value is None else str(value)
