"""Names that become parts of a run folder (`speaker.name`, the job id), validated before Hydra
writes anything there.

Importing this module registers the `casync.dirname` resolver that conf/*.yaml use in
`hydra.run.dir`; every entry module imports it before `@hydra.main`.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from casync.data.cache import validate_name


def dirname(what: str, value: object) -> str:
    """`${casync.dirname:speaker.name,${speaker.name}}` -> `value` if it is one safe directory
    name, else a ValueError naming `what` (so nothing lands outside `paths.log_dir`)."""
    name = str(value)
    try:
        return validate_name(name, what)
    except ValueError as error:
        raise ValueError(
            f"{error}; the run folder is built from it, so nothing was written"
        ) from None


if not OmegaConf.has_resolver("casync.dirname"):
    OmegaConf.register_new_resolver("casync.dirname", dirname)
