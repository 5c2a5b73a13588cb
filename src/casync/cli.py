"""How every command ends on a bad input: the error's own message (it names the file or key and
the fix), exit status 1, no traceback. Anything else is a bug and keeps its traceback.

Two places catch them: `exit_on_bad_input` around a command's work, and `command` around its
`@hydra.main` entry point, for what goes wrong before the work starts (an override Hydra cannot
apply, a bad name the run folder is built from)."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
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


def command(hydra_main: Callable[[], object], hints: Mapping[str, str] | None = None):
    """`hydra_main` (a `@hydra.main` function) as a command whose bad overrides and run-folder
    names end in one line and exit 1, like every other bad input. `hints`: for an override
    Hydra cannot apply to key K, what the user most likely meant (`{"audio": "the speech is
    driving_audio=FILE"}`)."""

    @functools.wraps(hydra_main)
    def main() -> object:
        from casync.runtime import return_freed_frames_to_the_system

        return_freed_frames_to_the_system()
        previous = os.environ.get("HYDRA_FULL_ERROR")
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its trace
        try:
            return hydra_main()
        except Exception as error:
            message = setup_error_message(error, hints or {})
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)  # logging is not set up yet
            sys.exit(1)
        finally:
            if previous is None:
                os.environ.pop("HYDRA_FULL_ERROR", None)
            else:
                os.environ["HYDRA_FULL_ERROR"] = previous

    return main


def setup_error_message(error: Exception, hints: Mapping[str, str]) -> str | None:
    """One line for a bad input Hydra meets while composing the config or building the run
    folder; None for anything else (a bug: it keeps its traceback)."""
    from hydra.errors import ConfigCompositionException, OverrideParseException
    from omegaconf.errors import InterpolationResolutionError

    if isinstance(error, InterpolationResolutionError):  # a resolver's ValueError (run_dir.py)
        raised = re.match(r"ValueError raised while resolving interpolation: (.*)", str(error))
        return raised.group(1) if raised else None
    if isinstance(error, (ConfigCompositionException, OverrideParseException)):
        message = " ".join(str(error).split())
        key = re.search(r"Could not (?:override|append to|find) '([\w.]+)", message)
        hint = hints.get(key.group(1).split("/")[0]) if key else None
        if hint:  # Hydra's own advice ("use +audio=...") would do something else
            message = message.split(". ")[0]
            return f"{message}: {hint}"
        return message
    return None
