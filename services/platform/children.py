"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def dies_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for a child of this process: the kernel sends the child SIGTERM (a clean stop) when this
    process dies, even by SIGKILL, where no `finally` of ours runs to stop it. Linux only; elsewhere a child can
    outlive a killed parent, as any child can. The signal follows the thread that forks, so start children from
    the main thread, not from a worker thread that may end."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arm
