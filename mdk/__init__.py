"""mdk, the Model Deployment Kit: config, bundles, CLI and the local tooling."""
