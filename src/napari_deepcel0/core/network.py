"""The Deep-STORM encoder-decoder (Nehme et al. 2018) and its DeepCEL0 variant.

A "conv block" is a 3 x 3 convolution (no bias) + BatchNorm + ReLU:

    conv32 -> maxpool2 -> conv64 -> maxpool2 -> conv128 -> maxpool2 -> conv512
    -> up2 -> conv128 -> up2 -> conv64 -> up2 -> conv32 -> 1 x 1 conv (no bias)

with nearest-neighbour upsampling and no skip connections (1.37 M parameters).
The head is linear for Deep-STORM and followed by a ReLU for DeepCEL0 (positivity).
The input is the camera frame, normalised and nearest-neighbour upsampled by ``L`` to
the fine grid. Inputs of any size work: the three poolings need sides that are multiples
of 8; other sides are covered by two windows of the largest such size, one against each
edge, each giving the half of the map on its side (see :meth:`LocalizationNet.forward`).
Large inputs run in overlapping tiles that give the same map in a fraction of the memory.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURE = "deepstorm-encoder-decoder-v1"
HEADS = ("relu", "linear")
CHANNELS = (32, 64, 128, 512)
#: fine pixels around a tile that its map depends on: an input pixel changes the output
#: up to 29 fine pixels away (three poolings and seven 3 x 3 convolutions); a multiple of 8
TILE_MARGIN = 32


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class LocalizationNet(nn.Module):
    """Encoder-decoder mapping an upsampled frame (B, 1, H, W) to a map (B, 1, H, W).

    Parameters
    ----------
    head
        ``"relu"`` (DeepCEL0: non-negative maps) or ``"linear"`` (Deep-STORM).
    """

    def __init__(self, head: str = "relu"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.head = head
        c1, c2, c3, c4 = CHANNELS
        self.enc1, self.enc2, self.enc3, self.bottleneck = _block(1, c1), _block(c1, c2), _block(c2, c3), _block(c3, c4)
        self.dec3, self.dec2, self.dec1 = _block(c4, c3), _block(c3, c2), _block(c2, c1)
        self.out = nn.Conv2d(c1, 1, 1, bias=False)
        self.tile_side = 1024

    @property
    def tile_side(self) -> int:
        """Inputs larger than this (fine pixels, a multiple of 8) on a side run in tiles."""
        return self._tile_side

    @tile_side.setter
    def tile_side(self, value: int) -> None:
        if isinstance(value, bool) or int(value) != value or value < 8 or value % 8:
            raise ValueError(f"tile_side must be a whole multiple of 8 fine pixels, got {value!r}")
        self._tile_side = int(value)

    def fused(self) -> "LocalizationNet":
        """A copy for inference, in evaluation mode, with each BatchNorm folded into the
        convolution before it (``w * g / sqrt(var + eps)``, bias ``b - mean * g / sqrt(var
        + eps)``): the same maps to float rounding (within 3e-6 of the largest value in
        fp32) from one layer fewer per block, 13 % more frames per second in fp32 on a
        2-core CPU (:class:`~.predict.DeepLocalizer` uses it in fp32 on a CPU). Not for
        training: its BatchNorms are gone."""
        net = copy.deepcopy(self).eval()
        for block in (net.enc1, net.enc2, net.enc3, net.bottleneck, net.dec3, net.dec2, net.dec1):
            conv, norm = block[0], block[1]
            if not isinstance(norm, nn.BatchNorm2d):  # already folded
                continue
            scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                               bias=True).to(conv.weight.device)
            with torch.no_grad():
                folded.weight.copy_(conv.weight * scale[:, None, None, None])
                folded.bias.copy_(norm.bias - norm.running_mean * scale)
            block[0], block[1] = folded, nn.Identity()
        net.requires_grad_(False)
        return net

    def forward(self, x: torch.Tensor, linear: bool = False) -> torch.Tensor:
        """Maps of inputs of any size. A side that is not a multiple of 8 (an odd number
        of camera pixels at ``L = 4``) is not padded: padding puts an edge the network
        never saw in training, which pulled molecules within about 150 nm of it 15-20 nm
        inward. Instead the network runs on two windows of the largest multiple of 8
        along that side, one against each edge, and each gives the half of the map on its
        side (up to 4 windows, 2-4 times the work, when both sides need it). Sides under 8
        are padded (replicated edge). ``linear`` leaves out the ReLU of a ``"relu"``
        head: the output before it, whose values around a spike place it within its
        fine pixel (:mod:`~napari_deepcel0.core.localize`'s ``"parabola"``)."""
        h, w = x.shape[-2:]
        if h % 8 == 0 and w % 8 == 0:
            return self._forward(x, linear)
        if h < 8 or w < 8:
            x = F.pad(x, (0, (-w) % 8, 0, (-h) % 8), mode="replicate")
            return self._forward(x, linear)[..., :h, :w]
        return _stitched(x, _windows(h), _windows(w), lambda part: self._forward(part, linear))

    def _forward(self, x: torch.Tensor, linear: bool = False) -> torch.Tensor:
        """The network on an input whose sides are multiples of 8; one larger than
        :attr:`tile_side` on a side runs in tiles of that side, each with a margin of
        :data:`TILE_MARGIN` (more than the network's reach), and gives the same map:
        the activations of a whole 2048 x 2048-pixel camera frame (8192 x 8192 fine
        pixels) would take about 40 GB, a tile's about 1 GB."""
        h, w = x.shape[-2:]
        t = self.tile_side
        if (h <= t and w <= t) or self.training:  # training: BatchNorm's statistics are the batch's
            return self._network(x, linear)
        return _stitched(x, _tiles(h, t), _tiles(w, t), lambda part: self._network(part, linear))

    def _network(self, x: torch.Tensor, linear: bool) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu":
            x = self.enc1(x)
            x = self.enc2(F.max_pool2d(x, 2))
            x = self.enc3(F.max_pool2d(x, 2))
            x = self.bottleneck(F.max_pool2d(x, 2))
        else:  # the same values: the ReLU after the pooling (max commutes with it), a quarter of the pixels
            x = self.bottleneck(_pooled(self.enc3, _pooled(self.enc2, _pooled(self.enc1, x))))
        x = self.dec3(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = self.dec2(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = self.dec1(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = self.out(x)
        if self.head == "relu" and not linear:
            x = F.relu(x)
        return x


def _pooled(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(block(x), 2)`` for inference, the same values faster on a CPU:
    the block's ReLU after the pooling (on a quarter of the pixels), and the 2 x 2
    maxima taken as two elementwise maxima of strided views, along the rows and then the
    columns, without the indices of the largest values that ``max_pool2d`` writes (8 bytes
    per output pixel): 28 against 4 ms for 16 maps of 32 x 256 x 256 in bf16 on 2 cores
    (a review's measurement; end to end: docs/benchmarks.md, Speed).
    Not for training: ``torch.maximum`` splits the gradient of a tie between both. Sides
    are even here (multiples of 8)."""
    x = block[:-1](x)  # the convolution and its BatchNorm (Identity when folded)
    v = x.permute(0, 2, 3, 1)  # (n, rows, cols, channels): contiguous for channels_last
    v = torch.maximum(v[:, 0::2], v[:, 1::2])
    v = torch.maximum(v[:, :, 0::2], v[:, :, 1::2])
    return block[-1](v.permute(0, 3, 1, 2))


def _windows(size: int) -> list[tuple[slice, slice, slice]]:
    """``(output, input, kept part of the window's map)`` along one side of at least 8:
    the whole side when it is a multiple of 8, else the first half from a window against
    the start and the rest from one against the end, both of the largest multiple of 8."""
    m = size - size % 8
    if m == size:
        return [(slice(0, size), slice(0, size), slice(0, size))]
    half, start = size // 2, size - m
    return [(slice(0, half), slice(0, m), slice(0, half)),
            (slice(half, size), slice(start, size), slice(half - start, m))]


def _tiles(size: int, tile: int) -> list[tuple[slice, slice, slice]]:
    """``(output, input, kept part of the tile's map)`` along one side, a multiple of 8:
    tiles of ``tile`` with :data:`TILE_MARGIN` more input on each side inside the input;
    all bounds are multiples of 8, so the poolings see the same blocks as on the whole."""
    out = []
    for start in range(0, size, tile):
        stop, first = min(start + tile, size), max(start - TILE_MARGIN, 0)
        out.append((slice(start, stop), slice(first, min(stop + TILE_MARGIN, size)),
                    slice(start - first, stop - first)))
    return out


def _stitched(x: torch.Tensor, rows, cols, network) -> torch.Tensor:
    """The map of ``x`` from ``network`` run on windows of it: ``rows`` and ``cols`` are
    ``(output, input, kept part)`` slices along each side (:func:`_windows`,
    :func:`_tiles`)."""
    out = None
    for (out_r, in_r, keep_r), (out_c, in_c, keep_c) in itertools.product(rows, cols):
        part = network(x[..., in_r, in_c])[..., keep_r, keep_c]
        if out is None:
            out = part.new_empty(part.shape[:-2] + x.shape[-2:])
        out[..., out_r, out_c] = part
    return out


def upsample_nearest(frames: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of (B, H, W) or (B, 1, H, W) by an integer factor
    (the ``np.kron(frame, ones((L, L)))`` of the reference)."""
    x = frames if frames.ndim == 4 else frames[:, None]
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def count_parameters(model: nn.Module) -> int:
    """The number of weights of ``model`` (1.37 million for :class:`LocalizationNet`)."""
    return sum(p.numel() for p in model.parameters())
