"""The registry of CloudFormation resource types the local cloud completes, and what a completer is given.

moto's CloudFormation creates most resources of the kit's stacks. It skips some types
(:data:`mdk.local.cloud.template.DEFERRED`), and of a few it creates it drops properties. Each service
module under :mod:`mdk.local.cloud.services` registers, per resource type, the function that completes
it through that service's API, as moto's models declare ``cloudformation_type()`` and
``create_from_cloudformation_json``::

    @completes("AWS::Lambda::Alias")
    def alias(ctx: Completion, logical: str, props: dict[str, Any]) -> None: ...

* :func:`completes`: a type moto's CloudFormation skips, created after the stack, in dependency order,
  with its properties resolved against the deployed stack;
* :func:`amends`: a type moto's CloudFormation creates but drops properties of, set after every
  completer ran (after the bucket policies).

:class:`~mdk.local.cloud.deploy.Deployer` walks the template and dispatches here; what a deploy
produced (:class:`StackDeployment`, the :class:`AliasChange` s it made) is defined here, since the
completers fill it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.template import Prepared

if TYPE_CHECKING:
    from mdk.local.cloud.deploy import Deployer


class DeployError(RuntimeError):
    """The app did not synthesize, or the local AWS refused a resource; the message says which."""


@dataclass
class AliasChange:
    """An alias whose version a deploy changes, with the deployment group that shifts it (if any)."""

    function: str
    alias: str
    from_version: str
    to_version: str
    application: str | None = None
    deployment_group: str | None = None
    before_traffic_hook: str | None = None  # the function CodeDeploy runs before shifting traffic


@dataclass
class StackDeployment:
    stack: str
    created: bool
    outputs: dict[str, str]
    functions: dict[str, str]  # logical id -> function name
    alias_changes: list[AliasChange] = field(default_factory=list)
    deployment_groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> resolved props
    deployment_configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> resolved props


@dataclass
class Completion:
    """What a completer is given besides its resource: the deploy it is part of."""

    deployer: Deployer
    stack: str
    prepared: Prepared
    result: StackDeployment
    previous_aliases: dict[tuple[str, str], str]  # (function, alias) -> version before the deploy
    #: alias logical id -> (application, deployment group, pre-traffic hook) of the group that shifts it
    alias_groups: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return self.deployer.region

    def client(self, service: str) -> Any:
        return self.deployer.client(service)

    def resolve(self, fragment: Any) -> Any:
        """The fragment with its intrinsics resolved against the deployed stack."""
        return moto_adapter.resolve(self.stack, fragment, self.region)


Completer = Callable[[Completion, str, dict[str, Any]], None]

#: resource type -> what creates it (types moto's CloudFormation skips)
COMPLETERS: dict[str, Completer] = {}
#: resource type -> what sets the properties moto's CloudFormation drops of it
AMENDERS: dict[str, Completer] = {}
# Not created locally, and why: AWS::ApiGateway::Account (an account-wide logging role, nothing to
# serve), AWS::CodeDeploy::DeploymentConfig (kept in StackDeployment.deployment_configs for the local
# CodeDeploy), AWS::CDK::Metadata.


def completes(resource_type: str) -> Callable[[Completer], Completer]:
    """Register the decorated function as the completer of ``resource_type``."""
    return _registrar(COMPLETERS, resource_type, "completed")


def amends(resource_type: str) -> Callable[[Completer], Completer]:
    """Register the decorated function as what sets the properties moto drops of ``resource_type``."""
    return _registrar(AMENDERS, resource_type, "amended")


def _registrar(
    table: dict[str, Completer], resource_type: str, verb: str
) -> Callable[[Completer], Completer]:
    def register(function: Completer) -> Completer:
        if resource_type in table:
            raise ValueError(f"{resource_type} is {verb} twice")
        table[resource_type] = function
        return function

    return register
