"""The local S3: the bucket settings moto's CloudFormation drops, and the bucket policies it skips.

moto runs the buckets; the deployer (:mod:`mdk.local.cloud.deploy`) also publishes the file assets to the
local bootstrap bucket. moto evaluates bucket policies without their conditioned statements
(:mod:`mdk.local.cloud.moto_adapter`).
"""

from __future__ import annotations

import json
from typing import Any

from mdk.local.cloud.registry import Completion, amends, completes


@completes("AWS::S3::BucketPolicy")
def bucket_policy(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    ctx.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))


@amends("AWS::S3::Bucket")
def bucket_settings(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    """What moto's CloudFormation drops of a bucket (it keeps the encryption and tags only)."""
    bucket = str(ctx.resolve({"Ref": logical}))
    s3 = ctx.client("s3")
    if props.get("VersioningConfiguration"):
        s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
        )
    if props.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                k: bool(v) for k, v in props["PublicAccessBlockConfiguration"].items()
            },
        )
    if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration"):
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    logging_config = props.get("LoggingConfiguration")
    if logging_config and logging_config.get("DestinationBucketName"):
        s3.put_bucket_logging(
            Bucket=bucket,
            BucketLoggingStatus={
                "LoggingEnabled": {
                    "TargetBucket": logging_config["DestinationBucketName"],
                    "TargetPrefix": logging_config.get("LogFilePrefix", ""),
                }
            },
        )
    rules: list[dict[str, Any]] = []
    for rule in props.get("LifecycleConfiguration", {}).get("Rules", []):
        converted: dict[str, Any] = {"ID": rule.get("Id", f"rule{len(rules)}"), "Status": rule["Status"]}
        converted["Filter"] = {"Prefix": rule.get("Prefix", "")}
        if "ExpirationInDays" in rule:
            converted["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
        if "NoncurrentVersionExpiration" in rule:
            converted["NoncurrentVersionExpiration"] = {
                "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
            }
        if "AbortIncompleteMultipartUpload" in rule:
            converted["AbortIncompleteMultipartUpload"] = {
                "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
            }
        rules.append(converted)
    if rules:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
