"""The local cloud: the kit's synthesized stacks deployed onto an embedded AWS (moto) and run for real.

``make up`` (``mdk local up``) starts it; tests start it in-process
(:class:`~mdk.local.cloud.cloud.LocalCloud`). Laid out as moto is, by AWS service:

* ``services/``: one module per emulated service (``lambda_``, ``apigateway``, ``cloudwatch``,
  ``codedeploy``, ``sagemaker``, ``autoscaling``, ``s3``, ``sns``, ``sqs``), each with the CloudFormation
  types it completes;
* ``registry``: resource type -> completer, what moto's CloudFormation skips or drops;
* ``deploy``: synth, assets, stacks, then the registry's completers (the orchestrator only);
* ``template``: templates moto can deploy; ``request_validation``: API Gateway's request validators;
* ``moto_adapter``: every use of moto's internals;
* ``cloud``: all of it together; ``cli``: ``mdk local``.
"""
