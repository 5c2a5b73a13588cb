"""How every command ends on a bad input: the error's own message (it names the file or key and
the fix), exit status 1, no traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf.errors import MissingMandatoryValue

log = logging.getLogger("casync")


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors a user's input or machine can cause (imported late: the entry modules stay light)."""
    from casync.atomic import DiskFullError
    from casync.audio.frontend import MissingWeightsError
    from casync.data.cache import CacheBusyError
    from casync.training.perceptual import MissingEfficientNetError, MissingVGGWeightsError

    return (
        ValueError,  # MediaError, CacheError, CheckpointError, OutputNotWritableError, settings
        FileNotFoundError,
        MissingMandatoryValue,
        DiskFullError,
        MissingWeightsError,
        MissingVGGWeightsError,
        MissingEfficientNetError,
        CacheBusyError,
    )


@contextmanager
def exit_on_bad_input() -> Iterator[None]:
    try:
        yield
    except expected_errors() as error:
        log.error("%s", error)
        sys.exit(1)
