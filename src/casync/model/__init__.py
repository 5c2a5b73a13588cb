"""The CASync network (an `nn.Module`; training lives in `casync.training`)."""

from casync.model.casync_net import CASyncNet

__all__ = ["CASyncNet"]
