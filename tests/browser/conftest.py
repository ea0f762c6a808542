"""Browser tests: the console in headless Chromium (Debian's `chromium`, driven by Playwright for Python).

They use the real stack like the integration tests, through the same `stack` and `settings` fixtures.
"""

from __future__ import annotations

from tests.integration.conftest import settings, stack  # noqa: F401 - fixtures shared with the integration tests


