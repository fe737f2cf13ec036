"""The local cloud: the kit's synthesized stacks deployed onto an embedded AWS (moto) and run for real.

``make up`` (``mdk local up``) starts it; tests start it in-process
(:class:`~mdk.local.cloud.cloud.LocalCloud`).
Modules: ``moto_adapter`` (every use of moto's internals), ``template`` (templates moto can deploy),
``deploy`` (synth, assets, stacks, what moto skips), ``functions`` (Lambda under the RIE), ``gateway``
(the REST API), ``endpoints`` (SageMaker endpoints and transform jobs), ``rollout`` (CodeDeploy and
alarms), ``cloud`` (all of it together).
"""
