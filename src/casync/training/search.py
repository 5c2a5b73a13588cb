"""Hyper-parameter sweeps on Optuna's RDB storage: a study that survives its workers.

`run_sweep(cfg, overrides, compose)` is one worker: it opens (or creates) the study named
`sweep.study_name` in `sweep.storage` (SQLite in the sweep folder by default; any SQLAlchemy URL,
e.g. PostgreSQL, for a study shared by machines) and runs trials until the study holds
`sweep.n_trials` completed ones. Start it again with the same study name and storage and it
resumes; start it on several machines or processes and they add trials to the one study.

Each trial composes the training config with the worker's own overrides plus the sampled ones,
calls `casync.train.train(cfg)` in its own folder (`sweep.dir/trial_NNNN`), and reports the
`sweep.objectives` from the metrics it returns (the best checkpoint's `best/val/sync/objective`
by default). A trial that raises is recorded as FAIL (Optuna keeps its parameters and the
error). A worker that dies mid-trial (killed, machine lost) stops beating its heartbeat: after
`sweep.grace_s` the next trial any worker starts marks it FAIL, and its parameters are run again
once (`RetryFailedTrialCallback`): no trial is lost or left RUNNING.

Why not hydra-optuna-sweeper: it pins optuna<3, whose RDB storage does not run on SQLAlchemy 2
(the schema check fails), it asks `n_trials` more trials per launch instead of resuming towards a
total, and its ask/tell loop runs no heartbeat, so a killed sweep leaves its trial RUNNING
forever.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
DIRECTIONS = ("minimize", "maximize")
COUNTED = (optuna.trial.TrialState.COMPLETE,)
PARAM_TYPES = ("float", "int", "categorical")


def storage_url(sweep: DictConfig) -> str:
    """`sweep.storage`, or SQLite in the sweep folder (one file per study)."""
    if sweep.storage:
        return str(sweep.storage)
    folder = Path(sweep.dir)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve() / 'study.db'}"


def rdb_storage(url: str, attempts: int = 5, **options) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage of `url`. Workers started together on a new database race to create
    its schema: each creates the tables and stamps the schema version in one row, and the
    losers fail on that row ("UNIQUE constraint failed: alembic_version.version_num") or on a
    table another has just made. A loser opens the database again, now made."""
    import sqlalchemy.exc

    for attempt in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url, **options)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as error:
            lost_the_race = isinstance(error, sqlalchemy.exc.IntegrityError) or (
                "already exists" in str(error)
            )
            if not lost_the_race:
                raise
            log.info("another worker is creating the study database %s; opening it again", url)
            time.sleep(0.2 * (attempt + 1))
    return optuna.storages.RDBStorage(url, **options)


def open_study(sweep: DictConfig) -> optuna.Study:
    """Create or load (same name and storage: resume, or join) the study; a dead worker's trial
    is failed after `grace_s` without a heartbeat, and retried once."""
    directions = list(sweep.objectives.values())
    bad = [d for d in directions if d not in DIRECTIONS]
    if not directions or bad:
        raise ValueError(
            f"sweep.objectives={OmegaConf.to_container(sweep.objectives)}: map each metric "
            f"train() returns to one of {DIRECTIONS}, e.g. {{best/val/sync/objective: minimize}}"
        )
    url = storage_url(sweep)
    storage = rdb_storage(
        url,
        heartbeat_interval=int(sweep.heartbeat_s),
        grace_period=int(sweep.grace_s),
        failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1),
        # SQLite: wait for another worker's write instead of failing on a locked file
        engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
    )
    sampler = instantiate(sweep.sampler) if sweep.get("sampler") else None
    study = optuna.create_study(
        study_name=str(sweep.study_name),
        storage=storage,
        sampler=sampler,
        directions=directions,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != directions:
        raise ValueError(
            f"study '{sweep.study_name}' in {url} optimizes "
            f"{[d.name.lower() for d in study.directions]}, not sweep.objectives {directions}: "
            "use another sweep.study_name for other objectives"
        )
    return study


def suggest(trial: optuna.Trial, params: DictConfig) -> list[str]:
    """Sample `sweep.params` -> Hydra overrides (`key=value`; a config group's key picks its
    option). A param with `when: {other: value}` is sampled only when that earlier param took
    that value."""
    overrides, chosen = [], {}
    for key, spec in params.items():
        kind = spec.get("type")
        if kind not in PARAM_TYPES:
            raise ValueError(
                f"sweep.params.{key}.type={kind!r}: use one of {PARAM_TYPES}, e.g. "
                "{type: float, low: 1e-4, high: 3e-3, log: true}"
            )
        condition = spec.get("when") or {}
        if any(chosen.get(other) != value for other, value in condition.items()):
            continue
        if kind == "categorical":
            value = trial.suggest_categorical(key, list(spec.choices))
        elif kind == "int":
            value = trial.suggest_int(key, spec.low, spec.high, step=spec.get("step", 1))
        else:
            value = trial.suggest_float(key, spec.low, spec.high, log=spec.get("log", False))
        chosen[key] = value
        overrides.append(f"{key}={value}")
    return overrides


def trial_values(metrics: dict[str, float], objectives: DictConfig) -> list[float]:
    """The objectives' values from `train()`'s metrics; a missing or non-finite one fails the
    trial (Optuna records it as FAIL, with this message)."""
    missing = [k for k in objectives if not math.isfinite(metrics.get(k, float("nan")))]
    if missing:
        raise ValueError(
            f"the trial returned no finite {missing} (returned: {sorted(metrics)}): "
            "sweep.objectives must name metrics train() returns, e.g. best/val/sync/objective "
            "(the default callbacks log it) or time/train_minutes"
        )
    return [float(metrics[k]) for k in objectives]


@contextmanager
def trial_log(folder: Path):
    """The trial's log records in `folder/train.log` (as a Hydra run writes its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def generator_fps(cfg: DictConfig) -> float:
    """Forward frames/s of the trial's network on this machine (batch 16, 2 s; random weights:
    speed does not depend on them)."""
    import torch

    from casync.profile import measure_throughput

    net = instantiate(cfg.model)
    return measure_throughput(net, 16, 2.0, torch.device("cpu"))


class Objective:
    """One trial: compose, train in `sweep.dir/trial_NNNN`, report the objectives. The retry of
    a trial that died (its worker killed, its session ended) resumes that trial's run from its
    `last.ckpt` where it left one (exactly: weights, optimizer, schedule, step), not from
    step 0: a 45-minute trial killed at 40 minutes costs 5 more, not 45."""

    def __init__(self, sweep: DictConfig, overrides: list[str], compose: Callable) -> None:
        self.sweep, self.overrides, self.compose = sweep, list(overrides), compose

    def folder(self, number: int) -> Path:
        """Where trial `number` runs."""
        return Path(self.sweep.dir) / f"trial_{number:04d}"

    def resumable(self, trial: optuna.Trial) -> Path | None:
        """The `last.ckpt` of the trial this one retries, if it is one and left one."""
        (frozen,) = [t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number]
        failed = optuna.storages.RetryFailedTrialCallback.retried_trial_number(frozen)
        if failed is None:
            return None
        last = self.folder(failed) / "checkpoints" / "last.ckpt"
        return last if last.is_file() else None

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        from casync.train import train

        sampled = suggest(trial, self.sweep.params)
        folder = self.folder(trial.number)
        trial.set_user_attr("overrides", sampled)
        trial.set_user_attr("output_dir", str(folder))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        resume = self.resumable(trial)
        if resume:
            trial.set_user_attr("resumed_from", str(resume))
            log.info("trial %d resumes the failed trial's run from %s", trial.number, resume)
        cfg = self.compose(
            [*self.overrides, *sampled, f"paths.output_dir={folder}"]
            + ([f"ckpt_path={resume}"] if resume else [])
        )
        log.info("trial %d: %s -> %s", trial.number, " ".join(sampled), folder)
        with trial_log(folder):
            start = time.monotonic()
            try:
                metrics = train(cfg)
            except Exception:
                log.exception("trial %d failed (Optuna records it as FAIL)", trial.number)
                raise
            metrics["time/train_minutes"] = (time.monotonic() - start) / 60
            metrics["time/generator_fps"] = generator_fps(cfg)
        kept = {k: v for k, v in metrics.items() if k.startswith(("val/", "best/", "time/"))}
        trial.set_user_attr("metrics", {k: v for k, v in kept.items() if math.isfinite(v)})
        values = trial_values(metrics, self.sweep.objectives)
        return values[0] if len(values) == 1 else values


class StopAt:
    """Stops a worker when the study holds `n_trials` completed trials, or more than
    `max_failures` failed ones (a recipe that always fails must not loop forever)."""

    def __init__(self, n_trials: int, max_failures: int) -> None:
        self.n_trials, self.max_failures = n_trials, max_failures

    def done(self, study: optuna.Study) -> bool:
        return len(study.get_trials(deepcopy=False, states=COUNTED)) >= self.n_trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        if self.done(study) or len(failed) > self.max_failures:
            study.stop()


def run_sweep(cfg: DictConfig, overrides: list[str], compose: Callable) -> optuna.Study:
    """One worker of the sweep `cfg.sweep` describes: trials until the study holds
    `sweep.n_trials` completed ones. `overrides`: this worker's command-line overrides, applied
    to every trial; `compose(overrides) -> DictConfig` composes a trial's training config."""
    sweep = cfg.sweep
    study = open_study(sweep)
    stop = StopAt(int(sweep.n_trials), int(sweep.max_failures))
    log.info("study %s in %s: %d trials so far", study.study_name, storage_url(sweep),
             len(study.trials))  # fmt: skip
    if not stop.done(study):
        study.optimize(
            Objective(sweep, overrides, compose), callbacks=[stop], catch=(Exception,),
            gc_after_trial=True,
        )  # fmt: skip
    failed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    if len(failed) > stop.max_failures:
        raise RuntimeError(
            f"study '{study.study_name}': {len(failed)} failed trials (sweep.max_failures="
            f"{stop.max_failures}); their errors are in each trial's train.log and in the study "
            "(optuna trials' system_attrs/fail_reason)"
        )
    return study
