"""`python -m casync.evaluate checkpoint=run.ckpt speaker.name=<name>`: compose
conf/evaluate.yaml, then `casync.evaluation.scoring.evaluate(cfg)`, which scores the checkpoint
on the speaker's held-out range and writes metrics.json, metrics.md and mouth_opening.png to
`paths.output_dir`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.cli import command
from casync.evaluation.scoring import evaluate

__all__ = ["evaluate", "main"]
log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def hydra_main(cfg: DictConfig) -> None:
    from casync.cli import exit_on_bad_input

    with exit_on_bad_input():
        results = evaluate(cfg)
    print(Path(results["files"]["markdown"]).read_text())
    print(
        f"wrote {results['files']['json']}, {results['files']['markdown']}, "
        f"{results['files']['plot']}"
    )


main = command(hydra_main)


if __name__ == "__main__":
    main()
