"""Local tooling: replay the Lambda image's Dockerfile and run it under the real Lambda emulator."""
