"""Every test runs in development (the published secrets, the local servers), however the shell was set up;
tests of production's refusals build `Settings(jobmeter_env="production", ...)` or a child's environment."""

from __future__ import annotations

import os

os.environ["JOBMETER_ENV"] = "development"
