"""Fold BatchNorm into the convolution before it, for inference (`model.norm=batch`).

At inference a BatchNorm is y = (x - mean) / sqrt(var + eps) * gamma + beta per channel: an
affine map, which the preceding convolution absorbs (its weights scaled per output channel, a
bias added). The folded network computes the same function with one operator less per block,
and the int8 and bf16 graphs keep the convolution, its bias and the activation together.
GroupNorm normalises each sample by its own statistics and cannot be folded; a network with
none to fold comes back unchanged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, BATCH_NORMS) for m in net.modules())


@torch.no_grad()
def fold_into(conv: nn.Conv1d | nn.Conv2d, norm: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """`conv` followed by `norm` (eval statistics) becomes `conv` alone."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # (C_out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    trailing = [1] * (conv.weight.dim() - 2)
    if isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d)):  # weight (C_in, C_out / g, ...)
        if conv.groups != 1:
            raise ValueError(f"{conv}: folding a grouped transposed convolution is not supported")
        conv.weight.mul_(scale.reshape(1, -1, *trailing))
    else:  # weight (C_out, C_in / g, ...)
        conv.weight.mul_(scale.reshape(-1, 1, *trailing))
    conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)


def folded(net: nn.Module) -> nn.Module:
    """An eval-mode copy of `net` with every BatchNorm folded into the convolution feeding it
    (in an `nn.Sequential`, or a module's `conv` + `norm` pair); `net` itself when it has none."""
    if not has_batch_norm(net):
        return net
    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            for i in range(1, len(module)):
                if isinstance(module[i], BATCH_NORMS) and isinstance(module[i - 1], CONVS):
                    fold_into(module[i - 1], module[i])
                    module[i] = nn.Identity()
        conv, norm = getattr(module, "conv", None), getattr(module, "norm", None)
        if isinstance(conv, CONVS) and isinstance(norm, BATCH_NORMS):
            fold_into(conv, norm)
            module.norm = nn.Identity()
    if has_batch_norm(net):
        raise ValueError("a BatchNorm without a convolution before it is left unfolded")
    return net
