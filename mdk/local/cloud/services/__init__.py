"""The AWS services of the local cloud, one module per service (as moto is organised).

Each module emulates what moto does not run itself and registers the CloudFormation resource types it
completes (:mod:`mdk.local.cloud.registry`):

* ``lambda_``: functions run under the Runtime Interface Emulator; aliases, permissions, event invoke
  configs (``lambda_quotas``: the invocation payload limits, shared with the Invoke API);
* ``apigateway``: the REST APIs served on a loopback port; stages, gateway responses, request validators
  and models, authorizers, API keys and usage plans, and the method and API settings moto drops
  (``gateway_access``: who may call which method, decided as API Gateway decides it);
* ``cognito``: the resource server and app clients of per-model OAuth scopes (imported by
  ``apigateway``, whose authorizers and token endpoint use them);
* ``cloudwatch``: metrics from the functions (EMF), the data points' statistics, alarm evaluation;
  alarms;
* ``codedeploy``: alias traffic shifting with hooks and alarm rollback; applications, deployment groups;
* ``sagemaker``: endpoints and transform jobs served by the kit's serving container;
* ``autoscaling``: scalable targets and scaling policies (registered, not acted on);
* ``s3``, ``sns``, ``sqs``: bucket settings moto drops, and the resource policies.

Nothing is imported here: :mod:`mdk.local.cloud.deploy` imports every module, which registers its types.
"""
