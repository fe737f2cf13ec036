#!/usr/bin/env python3
"""The CDK app of this checkout (`npx cdk synth`, `npx cdk deploy`): mdk/app.py, which a project
that installed the kit runs as `python -m mdk.app`."""

from __future__ import annotations

import sys

from mdk.app import main  # sets the umask before aws_cdk starts its Node process

if __name__ == "__main__":
    sys.exit(main())
