"""`python -m casync.sweep hparams_search=optuna speaker=<name>`: one worker of a resumable,
shareable Optuna sweep (`casync.training.search.run_sweep`); each trial is `casync.train.train`.
Run it again to resume; run it in several processes or machines (same `sweep.study_name` and
`sweep.storage`) to add trials to one study."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.cli import command

log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def compose_trial(overrides: list[str]) -> DictConfig:
    """A trial's training config: conf/train.yaml with `overrides`, its `hydra` node current (so
    `${hydra:runtime.choices.audio}` resolves, e.g. in a per-front-end cache folder)."""
    cfg = hydra.compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def worker_overrides(given: DictConfig) -> list[str]:
    """The worker's command-line overrides, as typed: each trial composes with them. Read
    unresolved: OmegaConf would resolve an interpolation inside an override (e.g. `paths.cache_dir=
    cache_${hydra:runtime.choices.audio}`) to the worker's value, not the trial's. Trials compose
    from the same config folders (`hydra.searchpath=[...]` adds some)."""
    task = OmegaConf.to_container(given.task, resolve=False)
    hydra_ = OmegaConf.to_container(given.hydra, resolve=False)
    return [*task, *(o for o in hydra_ if o.startswith("hydra.searchpath"))]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    from casync.cli import exit_on_bad_input
    from casync.training.search import run_sweep

    with exit_on_bad_input():
        if cfg.get("sweep") is None:
            raise ValueError(
                "casync.sweep needs a search: hparams_search=optuna (lip-sync objective) or "
                "hparams_search=optuna_pareto (objective vs training minutes)"
            )
        overrides = worker_overrides(HydraConfig.get().overrides)
        study = run_sweep(cfg, overrides, compose_trial)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    log.info("study %s: %d trials, %d complete", study.study_name, len(study.trials), len(done))
    if len(study.directions) == 1 and done:
        best = study.best_trial
        name = next(iter(cfg.sweep.objectives))
        overrides = " ".join(best.user_attrs.get("overrides", []))
        output = best.user_attrs.get("output_dir")
        log.info(
            "best: trial %d, %s = %.4f: %s (%s)", best.number, name, best.value, overrides, output
        )


main = command(hydra_main)


if __name__ == "__main__":
    main()
