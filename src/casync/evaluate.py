"""`python -m casync.evaluate checkpoint=run.ckpt speaker.name=<name>`: compose
conf/evaluate.yaml, then `casync.evaluation.scoring.evaluate(cfg)`, which scores the checkpoint
on the speaker's held-out range and writes metrics.json, metrics.md and mouth_opening.png to
`paths.output_dir`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.contract import CheckpointError
from casync.data.cache import CacheError
from casync.evaluation.scoring import evaluate

__all__ = ["evaluate", "main"]
log = logging.getLogger(__name__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from casync.audio.frontend import MissingWeightsError
    from casync.media import MediaError

    try:
        results = evaluate(cfg)
    except (CheckpointError, CacheError, MediaError, MissingWeightsError, ValueError) as error:
        log.error("%s", error)  # a bad input, named in the message: no traceback
        sys.exit(1)
    except FileNotFoundError as error:
        log.error("%s", error)
        sys.exit(1)
    print(Path(results["files"]["markdown"]).read_text())
    print(
        f"wrote {results['files']['json']}, {results['files']['markdown']}, "
        f"{results['files']['plot']}"
    )


if __name__ == "__main__":
    main()
