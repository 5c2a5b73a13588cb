"""The README's torchrun multi-node recipe, on this machine: two `torchrun --nnodes 2` launchers
(node ranks 0 and 1, one CPU process each, gloo over 127.0.0.1) train the tiny model, write one
run folder named after CASYNC_RUN_ID, and resume from its `last.ckpt`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_nodes(overrides: list[str], run_id: str, tmp_path: Path) -> list[str]:
    """Start both launchers, wait for both -> their outputs; fails if either fails."""
    port = free_port()
    env = {
        **os.environ,
        "CASYNC_RUN_ID": run_id,
        "CASYNC_NUM_NODES": "2",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SLURM_JOB_ID", None)
    launchers = []
    for rank in (0, 1):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
            str(rank), "--nproc-per-node", "1", "--master_addr", "127.0.0.1", "--master_port",
            str(port), "-m", "casync.train", *overrides,
        ]  # fmt: skip
        log = open(tmp_path / f"node{rank}.log", "w")  # noqa: SIM115 (closed below)
        launchers.append(
            (subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log), log)
        )
    try:
        codes = [process.wait(timeout=TIMEOUT_S) for process, _ in launchers]
    finally:
        for process, log in launchers:
            if process.poll() is None:
                process.kill()
            log.close()
    outputs = [(tmp_path / f"node{rank}.log").read_text() for rank in (0, 1)]
    for rank, (code, output) in enumerate(zip(codes, outputs, strict=True)):
        assert code == 0, f"node {rank} failed:\n{output[-3000:]}"
    return outputs


@pytest.mark.slow
def test_two_torchrun_nodes_train_into_one_run_folder_and_resume(s1_cache, tmp_path):
    root, speaker = s1_cache
    logs = tmp_path / "logs"
    overrides = [o for o in tiny_overrides(root, speaker, tmp_path) if not o.startswith("paths.")]
    overrides += [
        f"paths.cache_dir={root}", f"paths.log_dir={logs}", "trainer=multinode",
        "trainer.accelerator=cpu", "trainer.precision=32-true",
    ]  # fmt: skip
    outputs = two_nodes([*overrides, "trainer.max_steps=2"], "run42", tmp_path)
    assert any("MEMBER: 2/2" in out or "world_size=2" in out for out in outputs), outputs[0][-2000:]
    run_dir = logs / "train" / speaker / "run42"
    assert [p.name for p in (logs / "train" / speaker).iterdir()] == ["run42"]  # one folder
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2

    two_nodes([*overrides, "trainer.max_steps=4", f"ckpt_path={last}"], "run42", tmp_path)
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] == 4 and resumed["optimizer_states"]
    assert [p.name for p in (logs / "train" / speaker).iterdir()] == ["run42"]
