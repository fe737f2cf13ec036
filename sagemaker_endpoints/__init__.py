"""The kit's SageMaker serving container (real-time endpoints and batch transform)."""
