"""`casync.sweep`: an Optuna study in SQLite that two worker processes share (no trial lost or
duplicated, failures recorded as FAIL), that resumes after its worker is killed mid-trial (the
trial is failed, not left RUNNING, and its parameters run again), and its search-space rules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import compose_config
from hydra import initialize_config_dir
from omegaconf import OmegaConf
from test_training import tiny_overrides

from casync.sweep import CONFIG_DIR, compose_trial, worker_overrides
from casync.training.search import StopAt, open_study, suggest, trial_values

REPO = Path(__file__).resolve().parents[1]
# A search the tests can afford: two-step trials; data.reference=bogus fails (a bad config value
# raises in the DataModule), so some trials are failures by construction.
TINY_SEARCH = """\
# @package _global_
sweep:
  study_name: casync_${speaker.name}
  dir: ???
  storage: null
  n_trials: 4
  max_failures: 50
  heartbeat_s: 60
  grace_s: 900
  objectives:
    best/val/sync/objective: minimize
  sampler:
    _target_: optuna.samplers.RandomSampler
  params:
    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
    data.reference: {type: categorical, choices: [closed_mouth, bogus]}
"""


def worker_command(
    cache_root: Path, speaker: str, tmp: Path, *extra: str, search: str = TINY_SEARCH
) -> list[str]:
    folder = tmp / "conf" / "hparams_search"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(search)
    overrides = [o for o in tiny_overrides(cache_root, speaker, tmp) if "output_dir" not in o]
    return [
        sys.executable, "-m", "casync.sweep", f"hydra.searchpath=[file://{tmp / 'conf'}]",
        "hparams_search=tiny", *overrides, f"sweep.dir={tmp / 'sweep'}",
        "callbacks.lipsync.max_frames=25", *extra,
    ]  # fmt: skip


def load(tmp: Path) -> optuna.Study:
    return optuna.load_study(study_name="casync_s1", storage=f"sqlite:///{tmp / 'sweep/study.db'}")


def test_two_workers_share_one_sqlite_study(s1_cache, tmp_path):
    root, speaker = s1_cache
    command = worker_command(root, speaker, tmp_path, "sweep.n_trials=4")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outputs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT)
        for out in outputs
    ]
    codes = [w.wait(timeout=600) for w in workers]
    assert codes == [0, 0], "".join(out.read_text()[-3000:] for out in outputs)

    trials = load(tmp_path).trials
    states = {t.state for t in trials}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL}  # none lost
    assert 4 <= len(complete) <= 5  # a worker finishing its last trial may add one more
    assert [t.number for t in trials] == list(range(len(trials)))  # one record per trial
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both workers ran trials"
    folders = [t.user_attrs["output_dir"] for t in trials]
    assert len(set(folders)) == len(trials)  # no trial ran twice into one folder
    for trial in complete:
        assert trial.params["data.reference"] == "closed_mouth"
        assert trial.value == trial.user_attrs["metrics"]["best/val/sync/objective"]
        assert (Path(trial.user_attrs["output_dir"]) / "checkpoints" / "last.ckpt").is_file()
    for trial in failed:  # recorded with its parameters and the reason, not lost
        assert trial.params["data.reference"] == "bogus"
        assert (
            "data.reference='bogus'"
            in (Path(trial.user_attrs["output_dir"]) / "train.log").read_text()
        )


def test_a_killed_sweep_resumes_and_fails_then_retries_the_killed_trial(s1_cache, tmp_path):
    root, speaker = s1_cache
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    timing = ["sweep.heartbeat_s=1", "sweep.grace_s=3", "sweep.n_trials=1"]
    search = TINY_SEARCH.replace("[closed_mouth, bogus]", "[closed_mouth]")
    slow = worker_command(root, speaker, tmp_path, "trainer.max_steps=400",
                          "trainer.val_check_interval=400", *timing, search=search)  # fmt: skip
    worker = subprocess.Popen(slow, cwd=REPO, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    trial_log = tmp_path / "sweep" / "trial_0000" / "train.log"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:  # until the trial is training
            if trial_log.is_file() and "run folder" in trial_log.read_text():
                time.sleep(3)
                break
            time.sleep(1)
        else:
            pytest.fail("the worker never started training its trial")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and anything it started
        worker.wait()
    killed = load(tmp_path).trials
    assert [t.state for t in killed] == [optuna.trial.TrialState.RUNNING]  # as a crash leaves it

    time.sleep(4)  # past grace_s: the heartbeat has stopped
    resume = worker_command(root, speaker, tmp_path, *timing, search=search)
    done = subprocess.run(resume, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first, retry = load(tmp_path).trials
    assert first.state == optuna.trial.TrialState.FAIL  # the killed trial, failed not lost
    assert retry.state == optuna.trial.TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == first.number
    assert retry.params == first.params  # its parameters ran again


def test_the_retry_of_a_dead_trial_resumes_its_run_from_its_last_checkpoint(tmp_path):
    """A trial that died is failed and enqueued again (`RetryFailedTrialCallback`); the retry's
    run starts from the dead trial's `last.ckpt` (`ckpt_path=`: exact resume), or from step 0
    where it left none. Any other trial starts from step 0."""
    from casync.training.search import Objective

    cfg = compose_config("train", ["speaker.name=s1", "hparams_search=optuna",
                                   f"sweep.dir={tmp_path}"])  # fmt: skip
    study = open_study(cfg.sweep)
    composed = []

    class Composed(Exception):
        pass

    def compose(overrides):
        composed.append(overrides)
        raise Composed  # the test stops before training

    objective = Objective(cfg.sweep, ["audio=mel"], compose)

    def run_trial() -> optuna.trial.FrozenTrial:
        trial = study.ask()
        with pytest.raises(Composed):
            objective(trial)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return study.get_trials(deepcopy=False)[-1]

    dead = run_trial()  # no retry: from step 0
    assert not any(o.startswith("ckpt_path=") for o in composed[-1])
    last = tmp_path / f"trial_{dead.number:04d}" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"a checkpoint")
    optuna.storages.RetryFailedTrialCallback(max_retry=1)(study, dead)
    retry = run_trial()
    assert retry.params == dead.params
    assert f"ckpt_path={last}" in composed[-1]
    assert retry.user_attrs["resumed_from"] == str(last)
    no_checkpoint = run_trial()  # a new trial that dies before any checkpoint
    optuna.storages.RetryFailedTrialCallback(max_retry=1)(study, no_checkpoint)
    run_trial()
    assert not any(o.startswith("ckpt_path=") for o in composed[-1])


def test_search_space_conditions_types_and_objectives(tmp_path):
    cfg = compose_config("train", ["speaker.name=s1", "hparams_search=optuna"])
    study = optuna.create_study()
    for _ in range(6):
        trial = study.ask()
        overrides = dict(o.split("=", 1) for o in suggest(trial, cfg.sweep.params))
        assert ("loss.perceptual_weight" in overrides) == (
            overrides["loss.perceptual"] == "efficientnet_lite0"
        )
        assert overrides["audio"] in ("mel", "whisper_tiny")
        study.tell(trial, 0.0)
    bad = OmegaConf.create({"optim.lr": {"type": "loguniform", "low": 1, "high": 2}})
    with pytest.raises(ValueError, match=r"sweep.params.optim.lr.type='loguniform'"):
        suggest(study.ask(), bad)
    objectives = OmegaConf.create({"best/val/sync/objective": "minimize"})
    with pytest.raises(ValueError, match="no finite.*best/val/sync/objective"):
        trial_values({"val/psnr": 20.0, "best/val/sync/objective": float("nan")}, objectives)
    assert trial_values({"best/val/sync/objective": 0.4}, objectives) == [0.4]


def test_a_study_keeps_its_objectives_and_stops_at_n_complete(tmp_path):
    cfg = compose_config("train", ["speaker.name=s1", "hparams_search=optuna",
                                   f"sweep.dir={tmp_path}"])  # fmt: skip
    study = open_study(cfg.sweep)
    assert (tmp_path / "study.db").is_file()
    stop = StopAt(n_trials=2, max_failures=0)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.tell(study.ask(), 0.5)
    assert not stop.done(study)  # a failure is not a result
    study.tell(study.ask(), 0.4)
    assert stop.done(study) and len(open_study(cfg.sweep).trials) == 3  # loaded, not created
    pareto = compose_config("train", ["speaker.name=s1", "hparams_search=optuna_pareto",
                                      f"sweep.dir={tmp_path}", "sweep.study_name=casync_s1"])  # fmt: skip
    with pytest.raises(ValueError, match="optimizes \\['minimize'\\].*another sweep.study_name"):
        open_study(pareto.sweep)


OPEN_WHEN_TOLD = """
import sys, time
from pathlib import Path
from omegaconf import OmegaConf
from casync.training.search import open_study
sweep, go = OmegaConf.load(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
open_study(sweep)
print("opened", flush=True)
"""


def test_workers_started_together_on_a_new_database_all_open_it(tmp_path):
    """Four workers open one new SQLite study at the same moment, four times over. Each creates
    the schema and stamps its version in one row; before the fix the losers failed on it
    ("UNIQUE constraint failed: alembic_version.version_num": half the rounds of four with
    Optuna's storage alone, and once in CI's two-worker test)."""
    for round_ in range(4):
        folder = tmp_path / f"round{round_}"
        cfg = compose_config("train", ["speaker.name=s1", "hparams_search=optuna",
                                       f"sweep.dir={folder}"])  # fmt: skip
        settings = tmp_path / f"sweep{round_}.yaml"
        settings.write_text(OmegaConf.to_yaml(cfg.sweep, resolve=True))
        go = tmp_path / f"go{round_}"
        workers = [
            subprocess.Popen([sys.executable, "-c", OPEN_WHEN_TOLD, str(settings), str(go)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]  # fmt: skip
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        go.touch()
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0 and "opened" in out, err[-2000:]
        assert len(optuna.get_all_study_summaries(f"sqlite:///{folder / 'study.db'}")) == 1


def test_trials_get_the_workers_overrides_unresolved():
    """A per-trial interpolation in a worker override (a cache folder per front end) must reach
    each trial as typed: resolved in the worker, every trial would read the worker's audio
    option's cache (the GRID sweep's first mel trial failed so)."""
    given = OmegaConf.create({
        "task": ["paths.cache_dir=caches/${hydra:runtime.choices.audio}", "speaker.name=s1"],
        "hydra": ["hydra.searchpath=[file:///x]", "hydra.job.chdir=false"],
    })  # fmt: skip
    assert worker_overrides(given) == [
        "paths.cache_dir=caches/${hydra:runtime.choices.audio}", "speaker.name=s1",
        "hydra.searchpath=[file:///x]",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        caches = {
            audio: compose_trial([*worker_overrides(given)[:2], f"audio={audio}"]).paths.cache_dir
            for audio in ("mel", "whisper_tiny")
        }
    assert caches == {"mel": "caches/mel", "whisper_tiny": "caches/whisper_tiny"}


def test_the_hd_sharpness_study_searches_its_own_space_for_lip_sync_and_sharpness():
    """hparams_search=hd_sharpness (#24) replaces optuna.yaml's space (Hydra would merge two
    dicts), validates once at the sampled last step (so the sharpness is the selected
    checkpoint's) and reports on the last quarter, which it never selects on."""
    cfg = compose_config("train", ["speaker.name=s1", "hparams_search=hd_sharpness",
                                   "trainer.max_steps=1500"], hydra=True)  # fmt: skip
    params = cfg.sweep.params
    assert "loss.perceptual_region" in params and "loss.detail_weight" in params
    assert "model.width_multiplier" not in params and "audio" not in params
    assert dict(cfg.sweep.objectives) == {
        "best/val/sync/objective": "minimize",
        "val/sync/sharpness": "maximize",
    }
    assert cfg.trainer.val_check_interval == 1500 and cfg.data.test_fraction == 0.25
