"""One retry policy for everything sent out (exports, email): tenacity's, capped and stopped.

Only what ``transient`` says is temporary is tried again, waiting 1, 2, 4,
... seconds up to ``max_wait``, ``attempts`` tries in all; anything else is
raised at once. ``before_sleep`` is told of every failed try that will be
retried (to record it); ``sleep`` may raise to give up early (the daemon is
stopping). The last failure is raised as itself, not wrapped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import tenacity


def backoff(*, attempts: int, max_wait: float, transient: Callable[[BaseException], bool],
            before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
            sleep: Callable[[float], None] | None = None) -> tenacity.Retrying:
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=1, max=max_wait),
        retry=tenacity.retry_if_exception(transient),
        before_sleep=before_sleep, reraise=True, sleep=sleep if sleep is not None else time.sleep)
