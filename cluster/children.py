"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal


def die_with_parent() -> None:
    """``preexec_fn`` for Popen: the child gets SIGKILL when its parent dies.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so start such children
    from a thread that lives as long as they should (the main thread, a Ray worker's
    task thread). Without it a SIGKILLed parent (node pressure, a test, `ray.cancel
    (force=True)`, `kill -9` of `fandom up`) leaves an orphan ffmpeg burning the CPU a
    retry needs, or an orphan redis-server holding its port.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
