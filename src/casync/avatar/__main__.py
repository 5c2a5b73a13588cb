"""`python -m casync.avatar checkpoint=... video=... output=avatars/NAME`: prepare an avatar."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import casync.run_dir  # noqa: F401  (registers the resolvers hydra.run.dir uses)
from casync.cli import command

CONFIG_DIR = str(Path(__file__).resolve().parents[3] / "conf")


def avatar(cfg: DictConfig) -> dict:
    """Prepare `cfg.video` for `cfg.checkpoint` into `cfg.output` -> a summary."""
    from casync.avatar import prepare_avatar
    from casync.contract import load_generator
    from casync.infer import check_input

    missing = [k for k in ("checkpoint", "video", "output") if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ValueError(
            f"missing {', '.join(missing)}: python -m casync.avatar checkpoint=run.ckpt "
            "video=speaker.mp4 output=avatars/NAME"
        )
    check_input(cfg.video, "video", "a video of the checkpoint's speaker")
    idle = None if cfg.idle is None else tuple(float(t) for t in cfg.idle)
    if idle is not None and len(idle) != 2:
        raise ValueError(f"idle={list(cfg.idle)}: [start_s, stop_s]")
    generator = load_generator(cfg.checkpoint)
    made = prepare_avatar(cfg.video, generator, cfg.output, idle, cfg.idle_seconds)
    made.close()
    start, stop = made.idle.seconds
    return {"avatar": str(made.folder), "frames": made.n_frames, "idle_s": (start, stop),
            "idle_reason": made.idle.reason}  # fmt: skip


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="avatar")
def hydra_main(cfg: DictConfig) -> None:
    from casync.cli import exit_on_bad_input

    with exit_on_bad_input():
        summary = avatar(cfg)
    start, stop = summary["idle_s"]
    print(
        f"avatar ready: {summary['avatar']} ({summary['frames']} frames); idle loop "
        f"{start:.2f}-{stop:.2f} s: {summary['idle_reason']}"
    )


main = command(hydra_main)

if __name__ == "__main__":
    main()
