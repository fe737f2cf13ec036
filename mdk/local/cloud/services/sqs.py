"""The local SQS: the queue policies moto's CloudFormation skips (moto runs the queues themselves)."""

from __future__ import annotations

import json
from typing import Any

from mdk.local.cloud.registry import Completion, completes


@completes("AWS::SQS::QueuePolicy")
def queue_policy(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    for queue in props["Queues"]:
        ctx.client("sqs").set_queue_attributes(
            QueueUrl=queue, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
        )
