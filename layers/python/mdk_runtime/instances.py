"""SageMaker instance types: the family rules every side shares, in one place.

The CDK side (``mdk.config``, the stacks) and the batch trigger (a zip function that gets this package
as its Lambda layer) both decide from these whether a volume KMS key may be requested, so an endpoint
config and a transform job of the same instance type follow the same rule. Standard library only.
"""

from __future__ import annotations

# Instance families with local NVMe instance storage. SageMaker refuses a KMS volume key for them, in
# endpoint configs (ProductionVariant/EndpointConfig KmsKeyId) and transform jobs alike; their instance
# store is encrypted by a hardware module on the instance. "TransformResources - Amazon SageMaker API
# Reference", VolumeKmsKeyId: "Certain Nitro-based instances include local storage, dependent on the
# instance type. Local storage volumes are encrypted using a hardware module on the instance. You can't
# request a VolumeKmsKeyId when using an instance type with local storage."
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformResources.html
# (the list of such types: "Instance store volumes", Amazon EC2 User Guide,
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/InstanceStorage.html).
LOCAL_STORAGE_FAMILIES = frozenset(
    {"c5d", "c6gd", "c6id", "m5d", "m6gd", "m6id", "r5d", "r6gd", "r6id", "g4dn", "g5", "g6", "g6e",
     "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "trn1", "trn1n"}
)  # fmt: skip
# Graviton (arm64) families: they would need an arm64 serving image.
GRAVITON_FAMILIES = frozenset({"c6g", "c6gn", "c7g", "m6g", "m7g", "r6g", "r7g", "c6gd", "m6gd", "r6gd"})


def instance_family(instance_type: str) -> str:
    """``ml.g4dn.xlarge`` -> ``g4dn``."""
    return instance_type.split(".")[1]


def is_gpu(instance_type: str) -> bool:
    return instance_family(instance_type)[0] in "gp"


def has_local_storage(instance_type: str) -> bool:
    """Whether the type has local NVMe storage: then no volume KMS key may be sent for it."""
    return instance_family(instance_type) in LOCAL_STORAGE_FAMILIES


def takes_volume_key(instance_type: str) -> bool:
    """Whether SageMaker accepts a ``VolumeKmsKeyId`` (or endpoint config ``KmsKeyId``) for this type."""
    return not has_local_storage(instance_type)
