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


#: consumers per access stack: 3 resources and 1 output each, inside a template's 500 and 200
CONSUMERS_PER_STACK = 150


def access_stacks(project: str, stage: str, consumers: int) -> list[str]:
    """The access stacks of ``consumers`` consumers: ``<prefix>-access``, ``<prefix>-access-2``, ..."""
    first = access_stack(project, stage)
    count = -(-consumers // CONSUMERS_PER_STACK)
    return [first if i == 0 else f"{first}-{i + 1}" for i in range(count)]
