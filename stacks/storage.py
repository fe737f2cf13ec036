"""Buckets: encrypted with the stack's key, TLS-only, versioned, private, access-logged, expiring."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import nag
from stacks.settings import DeploySettings


class Storage(Construct):
    """The data key, the access-log bucket, and data buckets that log to it (``add_bucket``)."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.key = kms.Key(
            self,
            "DataKey",
            description=f"{settings.prefix}: encrypts model data (captures, batch files, endpoint volumes)",
            enable_key_rotation=True,
            removal_policy=settings.removal_policy,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 server access logging cannot write to KMS buckets
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # No ACLs: S3 server access logging writes through a bucket policy (cdk.json's feature flag).
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            removal_policy=settings.removal_policy,
            auto_delete_objects=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(365), noncurrent_version_expiration=Duration.days(30)
                )
            ],
        )
        nag.acknowledge(self.access_logs, nag.ACCESS_LOG_BUCKET)

    def add_bucket(
        self,
        construct_id: str,
        *,
        prefix: str,
        expire_days: int,
        expire_prefixes: dict[str, int] | None = None,
    ) -> s3.Bucket:
        """A data bucket: KMS (the data key), TLS-only, versioned, logged under ``prefix``, objects expire
        (after ``expire_days``, or under each of ``expire_prefixes`` after its own days)."""
        rules = [
            s3.LifecycleRule(
                prefix=key_prefix,
                expiration=Duration.days(days),
                noncurrent_version_expiration=Duration.days(1),
            )
            for key_prefix, days in sorted((expire_prefixes or {}).items())
        ]
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=prefix,
            removal_policy=self.settings.removal_policy,
            lifecycle_rules=[
                *rules,
                s3.LifecycleRule(
                    expiration=Duration.days(expire_days),
                    noncurrent_version_expiration=Duration.days(7),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )
