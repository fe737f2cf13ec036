"""Run by the SageMaker Python SDK v3's own interpreter (.cache/sdk-venv, ``make sdk``), not the kit's:
the SDK as a user runs it, pointed at the local cloud by ``AWS_ENDPOINT_URL``. Prints one JSON document.

usage: sagemaker_sdk.py ENDPOINT BODY_FILE MODEL_NAME INPUT_S3_URI OUTPUT_S3_URI
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(endpoint_name: str, body_file: str, model_name: str, data: str, output: str) -> None:
    import boto3
    from sagemaker.core.helper.session_helper import Session  # type: ignore[import-not-found]
    from sagemaker.core.resources import Endpoint  # type: ignore[import-not-found]
    from sagemaker.core.transformer import Transformer  # type: ignore[import-not-found]

    endpoint = Endpoint.get(endpoint_name=endpoint_name)  # DescribeEndpoint, parsed strictly
    answer = endpoint.invoke(
        body=Path(body_file).read_bytes(), content_type="application/json", accept="application/json"
    )
    body = answer.body
    raw = body.read() if hasattr(body, "read") else body
    transformer = Transformer(
        model_name=model_name,
        instance_count=1,
        instance_type="ml.g4dn.xlarge",
        output_path=output,
        sagemaker_session=Session(boto_session=boto3.session.Session()),
    )
    transformer.transform(
        data=data, content_type="application/jsonlines", split_type="Line", wait=True, logs=False
    )
    job = transformer.sagemaker_session.sagemaker_client.describe_transform_job(
        TransformJobName=transformer._current_job_name
    )
    print(
        json.dumps(
            {
                "status": endpoint.endpoint_status,
                "variant": answer.invoked_production_variant,
                "content_type": answer.content_type,
                "body": json.loads(raw),
                "job": job["TransformJobName"],
                "job_status": job["TransformJobStatus"],
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
