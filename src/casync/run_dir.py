"""Names that become parts of a run folder (`speaker.name`, the job id), validated before Hydra
writes anything there.

Importing this module registers the resolvers conf/hydra/default.yaml uses in `hydra.run.dir`
(`casync.run_folder`) and `casync.dirname`; every entry module imports it before `@hydra.main`.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from casync.data.cache import validate_name

RUN_ID = "run id (SLURM_JOB_ID or CASYNC_RUN_ID)"


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


def run_folder(speaker: DictConfig | None, run_id: object, sweep: bool = False) -> str:
    """`<speaker.name>/<run id>` (a sweep's job: `<job number>_<speaker.name>`), or `<run id>`
    for a command without a speaker (infer, profile), each part checked by `dirname`. A command with a speaker whose name is unset is
    refused here, before Hydra writes anything (no sample clip is assumed)."""
    run = dirname(RUN_ID, run_id)
    if speaker is None:
        return run
    if OmegaConf.is_missing(speaker, "name"):
        raise ValueError(
            "no speaker: name the one whose cache to use, speaker=NAME (conf/speaker/NAME.yaml) "
            "or speaker.name=NAME; preprocess also takes its videos without a file, "
            "speaker.name=NAME 'speaker.videos=[a.mp4,b.mov]'. Nothing was written"
        )
    name = dirname("speaker.name", speaker.name)
    return f"{run}_{name}" if sweep else f"{name}/{run}"


for _name, _resolver in (("casync.dirname", dirname), ("casync.run_folder", run_folder)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
