"""Build an audio front end from a config that is data, never code.

A checkpoint carries its front end's config (`_target_` plus settings). Hydra's `instantiate`
would call whatever `_target_` such a file names, nested as deep as it likes, so no front-end
config goes through it. Instead `_target_` must name one of CASync's own front ends
(`FRONT_ENDS`), and every other key one of that class's constructor arguments holding a plain value
of its annotated type (`casync.plain_settings`). Anything else is refused before any code runs, with
a message naming where the config came from and the key.
"""

from __future__ import annotations

from collections.abc import Mapping

from casync.audio.frontend import AudioFrontEnd, HubertFrontEnd, MelFrontEnd
from casync.audio.whisper import WhisperFrontEnd
from casync.plain_settings import SettingsError, plain_settings

FRONT_ENDS: dict[str, type] = {
    f"casync.audio.{cls.__name__}": cls for cls in (MelFrontEnd, HubertFrontEnd, WhisperFrontEnd)
}
# The defining module's spelling (`casync.audio.frontend.MelFrontEnd`) names the same class.
ALIASES = {f"{cls.__module__}.{cls.__name__}": name for name, cls in FRONT_ENDS.items()}


def front_end_class(config: Mapping, origin: str) -> type:
    """The allowed class a front-end config's `_target_` names, or SettingsError."""
    if not isinstance(config, Mapping):
        raise SettingsError(
            f"{origin}: the audio config is a {type(config).__name__}, not a mapping"
        )
    target = config.get("_target_")
    name = ALIASES.get(target, target) if isinstance(target, str) else None
    if name not in FRONT_ENDS:
        raise SettingsError(
            f"{origin}: audio._target_={target!r} is not a CASync audio front end (allowed: "
            f"{', '.join(sorted(FRONT_ENDS))}); nothing it names was imported or run"
        )
    return FRONT_ENDS[name]


def build_front_end(config: Mapping, origin: str) -> AudioFrontEnd:
    """The front end `config` describes; `origin` ("checkpoint 'run.ckpt'", "audio config")
    names the config in errors. A `feature_dim` setting is checked by the front end itself."""
    cls = front_end_class(config, origin)
    settings = {k: v for k, v in config.items() if k != "_target_"}
    return cls(**plain_settings(cls, settings, origin, prefix="audio."))
