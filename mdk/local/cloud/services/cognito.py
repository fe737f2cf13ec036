"""The local Cognito: the CloudFormation types of a model scope's resource server and the consumers' app
clients, which moto's CloudFormation skips, created in moto's Cognito.

The stacks import the user's pool by ARN; the local AWS stands in for it with an empty pool of the same
id (:func:`mdk.local.cloud.moto_adapter.ensure_user_pool`). Tokens for the app clients come from the
local gateway's ``POST /oauth2/token`` (:func:`mdk.local.cloud.services.gateway_access.client_credentials`),
and the gateway's Cognito authorizers verify them against the pool's keys.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from mdk.local.cloud import moto_adapter
from mdk.local.cloud.registry import Completion, completes

#: UserPoolClient properties that CreateUserPoolClient and UpdateUserPoolClient share (CloudFormation
#: names them as the API does).
_CLIENT_SETTINGS = (
    "ClientName",
    "RefreshTokenValidity",
    "AccessTokenValidity",
    "IdTokenValidity",
    "TokenValidityUnits",
    "ReadAttributes",
    "WriteAttributes",
    "ExplicitAuthFlows",
    "SupportedIdentityProviders",
    "CallbackURLs",
    "LogoutURLs",
    "DefaultRedirectURI",
    "AllowedOAuthFlows",
    "AllowedOAuthScopes",
    "AllowedOAuthFlowsUserPoolClient",
    "PreventUserExistenceErrors",
    "EnableTokenRevocation",
    "AuthSessionValidity",
)


@completes("AWS::Cognito::UserPoolResourceServer")
def resource_server(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    pool_id = str(props["UserPoolId"])
    moto_adapter.ensure_user_pool(pool_id, ctx.region)
    scopes = [
        {"ScopeName": str(s["ScopeName"]), "ScopeDescription": str(s.get("ScopeDescription", s["ScopeName"]))}
        for s in props.get("Scopes", [])
    ]
    identifier = str(props["Identifier"])
    moto_adapter.put_resource_server(
        pool_id, identifier, str(props.get("Name", identifier)), scopes, ctx.region
    )


@completes("AWS::Cognito::UserPoolClient")
def user_pool_client(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    """An app client, under the id the template's Ref of it was given; a redeploy updates it (its secret
    kept, as UpdateUserPoolClient keeps it)."""
    idp = ctx.client("cognito-idp")
    pool_id = str(props["UserPoolId"])
    moto_adapter.ensure_user_pool(pool_id, ctx.region)
    client_id = ctx.prepared.names[logical]
    settings = {k: props[k] for k in _CLIENT_SETTINGS if k in props}
    settings.setdefault("ClientName", logical)
    try:
        idp.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        created = idp.create_user_pool_client(
            UserPoolId=pool_id, GenerateSecret=bool(props.get("GenerateSecret")), **settings
        )["UserPoolClient"]
        moto_adapter.set_user_pool_client_id(pool_id, created["ClientId"], client_id, ctx.region)
        return
    idp.update_user_pool_client(UserPoolId=pool_id, ClientId=client_id, **settings)
