"""Local tooling: the RIE runner (rie.py), the batch transform runner (transform.py), child processes
(processes.py) and the local cloud (cloud/); images are staged from their recipes (mdk.images)."""
