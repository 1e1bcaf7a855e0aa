"""Training losses: blurred L2 fidelity, the CEL0 penalty and Deep-STORM's L1 term.

CEL0 (Soubies et al. 2015), per pixel ``i`` with column norm ``a_i``::

    phi(a, lam; u) = lam - (a^2 / 2) * (|u| - sqrt(2 lam) / a)^2   if |u| < sqrt(2 lam) / a
                   = lam                                           otherwise

It is 0 at 0, equals ``lam`` beyond the threshold ``sqrt(2 lam) / a`` and is continuous
(a continuous exact relaxation of ``lam * ||u||_0``). The DeepCEL0 paper's Eq. (6)
prints ``||c_i|| / 2`` instead of ``||c_i||^2 / 2``: with that typo the penalty would not
vanish at 0; we use the correct ``a^2 / 2``.

DeepCEL0 loss (paper Eq. 10): ``mean((g * f - t)^2) + mean(phi(f))``, where ``t`` is the
target already blurred by ``g`` (Gaussian, std 1 fine pixel, 7 x 7, sum 1), the means
run over batch and pixels (as in the reference notebook). Deep-STORM: the same fidelity
with ``2 g`` plus ``mean(|f|)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("cel0", "l1")


def gaussian_kernel_2d(sigma: float = 1.0, size: int = 7) -> np.ndarray:
    """Sampled Gaussian kernel of odd ``size``, normalised to sum 1."""
    if size % 2 != 1:
        raise ValueError("kernel size must be odd")
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma**2))
    return g / g.sum()


def cel0_threshold(lam: float, a) -> torch.Tensor | float:
    """``sqrt(2 lam) / a``: beyond it the CEL0 penalty is flat (equal to ``lam``)."""
    return math.sqrt(2.0 * lam) / a


def cel0_penalty(x: torch.Tensor, lam, a) -> torch.Tensor:
    """Element-wise CEL0 penalty ``phi(a, lam; x)`` (same shape as ``x``).

    ``a`` is a positive number or a tensor broadcastable to ``x`` (column norms); so is
    ``lam`` (one lambda per frame: shape (n, 1, 1)).
    """
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    if isinstance(lam, torch.Tensor):
        if not bool((lam > 0).all()):
            raise ValueError(f"lambda must be positive, got {lam.min().item()}")
        root = torch.sqrt(2.0 * lam)
        beyond = lam.to(x.dtype).expand_as(x)
    else:
        if not lam > 0:
            raise ValueError(f"lambda must be positive, got {lam}")
        root = math.sqrt(2.0 * lam)
        beyond = torch.full_like(x, lam)
    ax = x.abs()
    # lam - (a^2/2)(|x| - root/a)^2 expanded: exactly 0 at x = 0, no cancellation
    inside = a * ax * (root - 0.5 * a * ax)
    return torch.where(ax * a < root, inside, beyond)


def cel0_penalty_grad(x: torch.Tensor, lam: float, a) -> torch.Tensor:
    """Analytic derivative of :func:`cel0_penalty` (sign(x)*(sqrt(2 lam) a - a^2 |x|)
    inside the threshold, 0 outside); used to check autograd."""
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    thr = cel0_threshold(lam, a)
    inner = math.sqrt(2.0 * lam) * a - a**2 * x.abs()
    return torch.where(x.abs() < thr, torch.sign(x) * inner, torch.zeros_like(x))


class LocalizationLoss(nn.Module):
    """Blurred-L2 fidelity plus a sparsity term, for DeepCEL0 or Deep-STORM.

    Parameters
    ----------
    kind
        ``"cel0"`` (DeepCEL0) or ``"l1"`` (Deep-STORM).
    lam
        CEL0 weight ``lambda`` (paper: 100); ignored for ``"l1"``.
    column_norms
        The CEL0 ``a_i``: a number, or an (L, L) array of per-phase norms that is tiled
        over the map (use :func:`~napari_deepcel0.core.optics.phase_column_norms`).
    fidelity_gain
        Multiplies the blur kernel ``g`` (1 for DeepCEL0, 2 for Deep-STORM).
    """

    def __init__(self, kind: str = "cel0", lam: float = 100.0, column_norms=0.25, fidelity_gain: float = 1.0):
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
        if kind == "cel0" and not (lam > 0 and math.isfinite(lam)):
            raise ValueError(f"lambda must be a positive finite number, got {lam}")
        self.kind, self.lam = kind, float(lam)
        g = torch.as_tensor(gaussian_kernel_2d(), dtype=torch.float32)[None, None] * fidelity_gain
        self.register_buffer("blur", g)
        a = torch.as_tensor(np.asarray(column_norms, dtype=np.float32))
        self.register_buffer("phase_norms", a if a.ndim == 2 else a.reshape(1, 1))

    def norms_for(self, shape) -> torch.Tensor:
        """Column norms tiled over a map of trailing shape ``shape``."""
        p = self.phase_norms
        reps = (-(-shape[-2] // p.shape[0]), -(-shape[-1] // p.shape[1]))
        return p.repeat(*reps)[: shape[-2], : shape[-1]]

    def forward(self, pred: torch.Tensor, target_blurred: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Returns ``(total, {"fidelity": ..., "sparsity": ...})``; the parts are detached
        0-d tensors (``float()`` them to read; on a GPU that waits for the step)."""
        pred = pred.float()
        blurred = F.conv2d(pred, self.blur, padding=self.blur.shape[-1] // 2)
        fidelity = F.mse_loss(blurred, target_blurred.float())
        if self.kind == "cel0":
            sparsity = cel0_penalty(pred, self.lam, self.norms_for(pred.shape)).mean()
        else:
            sparsity = pred.abs().mean()
        total = fidelity + sparsity
        return total, {"fidelity": fidelity.detach(), "sparsity": sparsity.detach()}
