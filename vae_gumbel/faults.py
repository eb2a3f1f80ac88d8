"""A hook for fault-injection tests: ``VAE_GUMBEL_PAUSE="checkpoint=2,step=0.01"`` makes a run sleep
at those points, so that a test can kill it exactly there: ``checkpoint`` inside a checkpoint write
(the new file written and synced, not yet moved into place), ``step`` after every training step,
``epoch`` after every epoch. Unset, as in every real run, it does nothing.
"""

from __future__ import annotations

import os
import time


def pause(where: str) -> None:
    """Sleeps as long as VAE_GUMBEL_PAUSE asks for at ``where``."""
    setting = os.environ.get("VAE_GUMBEL_PAUSE")
    if not setting:
        return
    for item in setting.split(","):
        point, _, seconds = item.partition("=")
        if point.strip() == where:
            time.sleep(float(seconds))
