"""The notebooks run top to bottom (on the session's real cache and a tiny checkpoint) and are
committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch

from casync.contract import save_generator_checkpoint
from casync.model import CASyncNet

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.slow
def test_explore_notebook_runs_on_a_cache_and_checkpoint(s1_cache, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    root, speaker = s1_cache
    model = {"width_multiplier": 0.25, "audio_feature_dim": 80, "audio_window": 10}
    audio = {"_target_": "casync.audio.MelFrontEnd", "n_mels": 80, "window": 10}
    checkpoint = tmp_path / "tiny.ckpt"
    torch.manual_seed(0)
    save_generator_checkpoint(checkpoint, CASyncNet(**model), model, audio)
    monkeypatch.setenv("CASYNC_CACHE_DIR", str(root))
    monkeypatch.setenv("CASYNC_SPEAKER", speaker)
    monkeypatch.setenv("CASYNC_CHECKPOINT", str(checkpoint))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend

    path = NOTEBOOKS[0].parent / "explore_cache_and_attention.ipynb"
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=300, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    text = "\n".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "4 cross-attention blocks, attention over 10 audio tokens for 50 frames" in text
    assert "block 3: peak at" in text
    images = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert len(images) >= 4  # crops, audio, attention, generated
