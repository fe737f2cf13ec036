"""The deployment's stacks, by name: what ``cdk deploy`` takes, what ``mdk stacks`` prints.

``<project>-<stage>-shared`` holds what the models share; ``<project>-<stage>-model-<model>`` one model;
``<project>-<stage>-access`` (``api.auth: api_key`` with consumers) the consumers' keys and usage plans.
Standard library only: the CLI names stacks without importing the CDK.
"""

from __future__ import annotations


def prefix(project: str, stage: str) -> str:
    return f"{project}-{stage}"


def shared_stack(project: str, stage: str) -> str:
    return f"{prefix(project, stage)}-shared"


def model_stack(project: str, stage: str, model: str) -> str:
    return f"{prefix(project, stage)}-model-{model}"


def access_stack(project: str, stage: str) -> str:
    return f"{prefix(project, stage)}-access"
