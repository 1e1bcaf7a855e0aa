import math

import numpy as np
import pytest
import torch

from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.losses import (
    LocalizationLoss,
    cel0_penalty,
    cel0_penalty_grad,
    cel0_threshold,
    gaussian_kernel_2d,
)
from napari_deepcel0.core.network import TILE_MARGIN, LocalizationNet, count_parameters, upsample_nearest
from napari_deepcel0.core.optics import phase_column_norms


def test_parameter_count_matches_deep_storm():
    assert count_parameters(LocalizationNet("relu")) == pytest.approx(1.37e6, rel=0.01)


@pytest.mark.parametrize("shape", [(16, 16), (20, 28), (5, 7), (1, 1)])
def test_any_input_size_works_and_relu_head_is_non_negative(shape):
    torch.manual_seed(0)
    net = LocalizationNet("relu").eval()
    x = torch.randn(2, 1, *shape)
    out = net(x)
    assert out.shape == x.shape and (out >= 0).all()
    lin = LocalizationNet("linear").eval()
    for p, q in zip(lin.parameters(), net.parameters()):
        p.data.copy_(q.data)
    assert torch.allclose(torch.relu(lin(x)), out, atol=1e-6)


def test_sides_that_are_not_multiples_of_8_take_each_half_from_a_window_against_its_edge():
    torch.manual_seed(0)
    net = LocalizationNet("relu").eval()
    x = torch.randn(1, 1, 20, 36)  # 20 rows: windows of 16 at rows 0-15 and 4-19; 36 columns: 32 at 0-31, 4-35
    with torch.no_grad():
        out = net(x)
        top_left, bottom_right = net(x[..., :16, :32]), net(x[..., 4:, 4:])
    assert torch.equal(out[..., :10, :18], top_left[..., :10, :18])  # each half from the window at its edge
    assert torch.equal(out[..., 10:, 18:], bottom_right[..., 6:, 14:])
    assert not torch.allclose(out[..., 10:16, 18:32], top_left[..., 10:16, 18:32])  # the windows differ there
    # a side that is a multiple of 8 is one window
    assert torch.equal(net(x[..., :16, :])[..., :, :18], net(x[..., :16, :32])[..., :, :18])


def _trained_like(net):
    """Non-trivial BatchNorm statistics, as a trained network has."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_the_margin_covers_the_networks_reach():
    torch.manual_seed(1)
    net = _trained_like(LocalizationNet())
    x = torch.randn(1, 1, 128, 128)
    reach = []
    with torch.no_grad():
        base = net(x)
        for pos in range(56, 64):  # every phase of the three poolings
            y = x.clone()
            y[..., pos, pos] += 10.0
            changed = torch.nonzero((net(y) - base)[0, 0].abs().amax(1) > 0).flatten()
            reach += [pos - int(changed.min()), int(changed.max()) - pos]
    assert TILE_MARGIN - 8 < max(reach) <= TILE_MARGIN  # covered, and not by much more than needed


@pytest.mark.parametrize("shape", [(72, 136), (100, 50)])
def test_large_inputs_run_in_tiles_that_give_the_same_map(shape):
    torch.manual_seed(2)
    net = _trained_like(LocalizationNet())
    x = torch.randn((2, 1) + shape)
    with torch.no_grad():
        whole = net(x, linear=True)
        net.tile_side = 32  # tiles of 32 fine pixels with margins of 32: 3-5 tiles per side
        tiled = net(x, linear=True)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)


def test_the_tile_side_is_a_multiple_of_8():
    net = LocalizationNet()
    for bad in (20, 0, 7.5, True):
        with pytest.raises(ValueError, match="multiple of 8"):
            net.tile_side = bad
    net.tile_side = 64
    assert net.tile_side == 64


def test_training_does_not_tile():  # BatchNorm uses each batch's statistics in training
    net = LocalizationNet().train()
    net.tile_side = 32
    x = torch.randn(2, 1, 64, 64)
    out = net(x)
    assert out.shape == x.shape
    net.tile_side = 1024
    assert torch.allclose(net(x), out, atol=1e-6)


def test_the_fused_network_gives_the_same_maps_without_batchnorm():
    """BatchNorm folded into the convolutions for inference (13 % more frames/s in fp32 on
    a CPU): the same maps to float rounding, with trained statistics, the original kept."""
    from napari_deepcel0.core.model_io import load_bundled_model

    net = load_bundled_model().network.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fused = net.fused()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules()) and not fused.training
    x = torch.randn(2, 1, 64, 70)  # (a side that is no multiple of 8: the windows too)
    with torch.no_grad():
        plain, folded = net(x, linear=True), fused(x, linear=True)
    assert float((plain - folded).abs().max()) < 1e-5 * float(plain.abs().max())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the original is untouched
    assert fused.fused() is not fused and count_parameters(fused) < count_parameters(net)


def test_the_localizer_folds_batchnorm_in_fp32_on_the_cpu_only(tiny_model_path):
    """In bf16 the folded weights round otherwise (ISBI 2013: 63.56 % for 63.60 %): the
    measured numbers stay those of the network as trained."""
    from napari_deepcel0.core.predict import DeepLocalizer

    def has_batchnorm(localizer):
        return any(isinstance(m, torch.nn.BatchNorm2d) for m in localizer.network.modules())

    fp32 = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32")
    bf16 = DeepLocalizer(tiny_model_path, device="cpu", precision="bf16")
    assert not has_batchnorm(fp32) and has_batchnorm(bf16)
    assert fp32.network is not fp32.loaded.network and bf16.network is not bf16.loaded.network


def test_unknown_head():
    with pytest.raises(ValueError, match="head"):
        LocalizationNet("sigmoid")


def test_upsample_nearest_is_kron():
    f = torch.arange(6.0).reshape(1, 2, 3)
    up = upsample_nearest(f, 4)[0, 0].numpy()
    assert np.array_equal(up, np.kron(f[0].numpy(), np.ones((4, 4))))


def test_cel0_penalty_values_and_continuity():
    lam, a = 100.0, 0.25
    thr = cel0_threshold(lam, a)
    assert thr == pytest.approx(math.sqrt(200) / 0.25)
    u = torch.tensor([0.0, thr * 0.5, thr - 1e-6, thr, thr + 1e-6, 2 * thr, -3 * thr], dtype=torch.float64)
    phi = cel0_penalty(u, lam, a)
    assert phi[0] == 0.0
    assert phi[3:].tolist() == pytest.approx([lam] * 4)
    assert phi[2] == pytest.approx(lam, abs=1e-6)  # continuous at the threshold
    assert phi[1] == pytest.approx(lam - 0.5 * a**2 * (thr / 2) ** 2)
    # the typo'd ||c||/2 factor would not vanish at 0; the correct a^2/2 does:
    assert lam - a / 2 * thr**2 != 0
    # symmetric and non-decreasing in |u|
    grid = torch.linspace(0, 2 * thr, 1001, dtype=torch.float64)
    vals = cel0_penalty(grid, lam, a)
    assert torch.all(vals[1:] >= vals[:-1] - 1e-12)
    assert torch.allclose(cel0_penalty(-grid, lam, a), vals)


def test_cel0_gradient_matches_autograd_and_finite_differences():
    lam = 100.0
    a = torch.tensor(phase_column_norms(ISBI2013), dtype=torch.float64)
    x = (torch.rand(4, 4, dtype=torch.float64) * 120 - 20).requires_grad_(True)
    cel0_penalty(x, lam, a).sum().backward()
    assert torch.allclose(x.grad, cel0_penalty_grad(x.detach(), lam, a))
    eps = 1e-6
    xd = x.detach()
    fd = (cel0_penalty(xd + eps, lam, a) - cel0_penalty(xd - eps, lam, a)) / (2 * eps)
    assert torch.allclose(fd, x.grad, atol=1e-5)


def test_penalty_rejects_bad_lambda():
    with pytest.raises(ValueError):
        cel0_penalty(torch.zeros(3), 0.0, 0.25)
    with pytest.raises(ValueError):
        LocalizationLoss("cel0", lam=float("inf"))


def test_loss_is_zero_for_a_perfect_sparse_prediction():
    g = torch.tensor(gaussian_kernel_2d(), dtype=torch.float32)[None, None]
    assert float(g.sum()) == pytest.approx(1.0)
    spikes = torch.zeros(1, 1, 32, 32)
    spikes[0, 0, 10, 10] = 85.0
    target = torch.nn.functional.conv2d(spikes, g, padding=3)
    loss = LocalizationLoss("cel0", 100.0, phase_column_norms(ISBI2013))
    total, parts = loss(spikes, target)
    assert parts["fidelity"] == pytest.approx(0.0, abs=1e-8)
    # one spike beyond the threshold costs exactly lambda, averaged over the pixels
    assert parts["sparsity"] == pytest.approx(100.0 / (32 * 32), rel=1e-5)
    l1 = LocalizationLoss("l1", fidelity_gain=2.0)
    _, p1 = l1(spikes / 2, target)
    assert p1["fidelity"] == pytest.approx(0.0, abs=1e-8)
    assert p1["sparsity"] == pytest.approx(42.5 / (32 * 32))


def test_the_loss_blur_is_the_papers_g_and_its_norms_tile_any_size():
    """g: a Gaussian of sigma 1 fine pixel, 7 x 7 (sigma / sqrt 2 stayed consistent with the
    targets and went unseen); the column norms cover sizes that are no multiple of L."""
    g = gaussian_kernel_2d()
    assert g.shape == (7, 7) and g[3, 4] / g[3, 3] == pytest.approx(math.exp(-0.5))
    loss = LocalizationLoss("cel0", 1.0, np.arange(16, dtype=np.float32).reshape(4, 4) + 1)
    assert tuple(loss.norms_for((1, 1, 18, 18)).shape) == (18, 18)


# ---- found missing by mutation testing (a second round, 2026-11-28): each fails on the bug it names
def test_the_linear_head_of_deep_storm_gives_negative_values_too():
    """N1 (network.py:492, the ReLU applied to every head): Deep-STORM's linear head
    must keep negative outputs (its L1 loss and the paper's model); only the ReLU head
    of DeepCEL0 clips them."""
    from napari_deepcel0.core.network import LocalizationNet

    torch.manual_seed(0)
    x = torch.randn(2, 1, 32, 32)
    linear, relu = LocalizationNet("linear").eval(), LocalizationNet("relu").eval()
    relu.load_state_dict(linear.state_dict())
    with torch.no_grad():
        out, clipped = linear(x), relu(x)
    assert out.min() < 0
    assert torch.equal(clipped, out.clamp_min(0))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fast_cpu_inference_path_gives_the_same_maps(precision):
    """On a CPU without gradients the encoder pools before its ReLU (max commutes with it)
    and without max_pool2d's indices: a quarter of the ReLU work and no index writes, the
    same maps to the bit (a speed review); training keeps max_pool2d."""
    from napari_deepcel0.core.devices import autocast

    torch.manual_seed(0)
    net = LocalizationNet("relu").eval()
    for module in net.modules():  # BatchNorms with statistics of their own, as trained ones
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 1, 64, 96).contiguous(memory_format=torch.channels_last)
    for model in (net, net.fused()):
        with autocast(torch.device("cpu"), precision):
            with torch.no_grad():
                fast = model(x, linear=True)
            with torch.enable_grad():  # the path of training
                usual = model(x, linear=True).detach()
        assert torch.equal(fast, usual)
