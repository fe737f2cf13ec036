"""Day-2 operations on a deployment: the engine behind the operator commands of ``mdk``."""
