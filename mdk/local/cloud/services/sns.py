"""The local SNS: the topic policies moto's CloudFormation skips (moto runs the topics themselves)."""

from __future__ import annotations

import json
from typing import Any

from mdk.local.cloud.registry import Completion, completes


@completes("AWS::SNS::TopicPolicy")
def topic_policy(ctx: Completion, logical: str, props: dict[str, Any]) -> None:
    for topic in props["Topics"]:
        ctx.client("sns").set_topic_attributes(
            TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
        )
