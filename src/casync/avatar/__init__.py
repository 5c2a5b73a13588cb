"""An avatar: one source video prepared once (decoded, tracked, cropped, stored) and then
driven by any audio, by `casync.infer avatar=`, `Synthesizer` and the live server."""

from casync.avatar.avatar import Avatar, AvatarError, cached_avatar, load_avatar, prepare_avatar
from casync.avatar.idle import IdleLoop

__all__ = ["Avatar", "AvatarError", "IdleLoop", "cached_avatar", "load_avatar", "prepare_avatar"]
