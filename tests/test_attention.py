"""DRAW's Gaussian attention: filterbanks, read and write (pyrogen.nn.attention)."""

import math

import pytest
import torch

from pyrogen.nn.attention import (
    FullRead,
    FullWrite,
    GaussianRead,
    GaussianWrite,
    gaussian_filterbank,
)


def _fix_window(module, center=(0.0, 0.0), log_variance=0.0, log_stride=0.0, log_gamma=0.0):
    """Make the attention parameters constant: zero weights, the raw values as bias."""
    with torch.no_grad():
        module.params.weight.zero_()
        module.params.bias.copy_(
            torch.tensor([center[0], center[1], log_variance, log_stride, log_gamma])
        )
    return module


def test_filterbank_rows_sum_to_one_even_where_a_direct_normalisation_fails(float64):
    # sharp filters centred far off the canvas: every unnormalised entry underflows to 0
    center = torch.tensor([-500.0, 3.0, 1e4])
    log_var = torch.tensor([math.log(1e-3), 0.0, math.log(1e-3)])
    stride = torch.tensor([1.0, 2.5, 0.3])
    F = gaussian_filterbank(center, log_var, stride, grid_size=4, size=7)
    assert F.shape == (3, 4, 7)
    assert torch.isfinite(F).all()
    torch.testing.assert_close(F.sum(-1), torch.ones(3, 4), rtol=0, atol=1e-12)
    # the underflow is real: exp(-(a - mu)^2 / 2 sigma^2) is zero in double precision
    assert math.exp(-((1 + 500.0) ** 2) / 2e-3) == 0.0
    # all the mass of an off-canvas sharp filter is on the nearest edge pixel
    torch.testing.assert_close(F[0, :, 0], torch.ones(4))
    torch.testing.assert_close(F[2, :, -1], torch.ones(4))


def test_filterbank_is_the_normalised_gaussian_of_the_paper(float64):
    """Against the formula written out, entry by entry (N = 3, A = 5, 1-based pixels)."""
    g, log_var, delta, N, A = torch.tensor(2.7), torch.tensor(0.4), torch.tensor(1.3), 3, 5
    F = gaussian_filterbank(g, log_var, delta, N, A)
    var = math.exp(0.4)
    for i in range(1, N + 1):
        mu = 2.7 + (i - N / 2 - 0.5) * 1.3
        row = [math.exp(-((a - mu) ** 2) / (2 * var)) for a in range(1, A + 1)]
        z = sum(row)
        torch.testing.assert_close(F[i - 1], torch.tensor([r / z for r in row]))


def test_window_scaling_follows_the_canvas():
    """Raw zeros put the grid centre at the canvas centre ((A+1)/2, (B+1)/2) and spread the
    grid over the larger side (stride (max(A, B) - 1) / (N - 1))."""
    read = _fix_window(GaussianRead(4, height=9, width=13, grid_size=5))
    w = read.window(torch.zeros(2, 4))
    torch.testing.assert_close(w.center_x, torch.full((2,), 7.0))
    torch.testing.assert_close(w.center_y, torch.full((2,), 5.0))
    torch.testing.assert_close(w.stride, torch.full((2,), 3.0))
    torch.testing.assert_close(w.intensity, torch.ones(2))
    # g~ = -1 and +1 are the edges 0 and A + 1
    w = read.window_of(torch.tensor([[-1.0, 1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(w.center_x, torch.tensor([0.0]))
    torch.testing.assert_close(w.center_y, torch.tensor([10.0]))


@pytest.mark.parametrize("channels,height,width", [(1, 6, 6), (3, 5, 7)])
def test_identity_read_recovers_the_image(float64, channels, height, width):
    """N = A = B (square: N = side), stride 1, tiny variance, centred grid: F = I, read = x.
    For a rectangle the grid covers the wider axis and the filters reach over the shorter
    one's edges, so the recovered part is the centred window."""
    N = max(height, width)
    read = _fix_window(
        GaussianRead(3, height, width, grid_size=N, channels=channels),
        log_variance=math.log(1e-3),
        log_stride=math.log((N - 1) / (max(height, width) - 1)),
    )
    x = torch.rand(2, channels, height, width)
    x_hat = torch.rand(2, channels, height, width) - 0.5
    out = read(x, x_hat, torch.randn(2, 3))
    assert out.shape == (2, 2 * channels * N * N)
    glimpse_x, glimpse_err = out.unflatten(-1, (2, channels, N, N)).unbind(1)
    # grid rows/columns that fall on the canvas: offsets of the centred grid
    r0, c0 = (N - height) // 2, (N - width) // 2
    torch.testing.assert_close(
        glimpse_x[..., r0 : r0 + height, c0 : c0 + width], x, atol=1e-10, rtol=0
    )
    torch.testing.assert_close(
        glimpse_err[..., r0 : r0 + height, c0 : c0 + width], x_hat, atol=1e-10, rtol=0
    )
    # the intensity scales the glimpse
    _fix_window(
        read,
        log_variance=math.log(1e-3),
        log_stride=math.log((N - 1) / (max(height, width) - 1)),
        log_gamma=math.log(2.5),
    )
    scaled = read.glimpse(x, torch.randn(2, 3))
    torch.testing.assert_close(scaled[..., r0 : r0 + height, c0 : c0 + width], 2.5 * x)


def test_write_of_read_is_the_projection_onto_the_grid_pixels(float64):
    """A sharp 3x3 grid with stride 2 on a 7x7 canvas selects pixels 2, 4, 6 (1-based) on
    each axis: F F^T = I (read of write is the identity on patches) and F^T F is the
    diagonal 0/1 selector, so write(read(x)) keeps the grid pixels, zeroes the rest and is
    idempotent (a projection). The intensity cancels between read and write."""
    A, N = 7, 3
    kw = dict(log_variance=math.log(1e-3), log_stride=math.log(2 * (N - 1) / (A - 1)))
    read = _fix_window(GaussianRead(2, A, A, N, channels=2), log_gamma=math.log(3.0), **kw)
    write = _fix_window(GaussianWrite(2, A, A, N, channels=2), log_gamma=math.log(3.0), **kw)
    h = torch.randn(4, 2)
    x = torch.rand(4, 2, A, A)
    fx, fy, gamma = read.filterbanks(h)
    selector = torch.zeros(A, A)
    selector[[1, 3, 5], [1, 3, 5]] = 1.0
    torch.testing.assert_close(
        fx.transpose(-1, -2) @ fx, selector.expand(4, A, A), atol=1e-10, rtol=0
    )
    torch.testing.assert_close(
        fx @ fx.transpose(-1, -2), torch.eye(N).expand(4, N, N), atol=1e-10, rtol=0
    )

    def write_read(image):
        patch = read.glimpse(image, h)
        return write.apply_filterbanks(patch, *write.filterbanks(h))

    once = write_read(x)
    mask = selector.diagonal()[:, None] * selector.diagonal()[None, :]
    torch.testing.assert_close(once, x * mask, atol=1e-10, rtol=0)
    torch.testing.assert_close(write_read(once), once, atol=1e-10, rtol=0)
    # and read(write(w)) = w for any patch
    patch = torch.randn(4, 2, N, N)
    canvas = write.apply_filterbanks(patch, *write.filterbanks(h))
    torch.testing.assert_close(read.glimpse(canvas, h), patch, atol=1e-10, rtol=0)


def test_write_shapes_channels_rectangles_and_particle_dims():
    write = GaussianWrite(5, height=6, width=11, grid_size=4, channels=3)
    assert write(torch.randn(2, 7, 5)).shape == (2, 7, 3, 6, 11)
    read = GaussianRead(5, height=6, width=11, grid_size=4, channels=3)
    assert read.output_size == 2 * 3 * 16
    # image without the particle dim, error image and state with it: broadcast
    out = read(torch.rand(7, 3, 6, 11), torch.rand(2, 7, 3, 6, 11), torch.randn(2, 7, 5))
    assert out.shape == (2, 7, read.output_size)
    full_read, full_write = FullRead(6, 11, 3), FullWrite(5, 6, 11, 3)
    out = full_read(torch.rand(7, 3, 6, 11), torch.rand(2, 7, 3, 6, 11), torch.randn(2, 7, 5))
    assert out.shape == (2, 7, full_read.output_size) == (2, 7, 2 * 3 * 66)
    assert full_write(torch.randn(2, 7, 5)).shape == (2, 7, 3, 6, 11)


def test_full_read_concatenates_and_full_write_is_linear():
    full_read, full_write = FullRead(2, 3), FullWrite(4, 2, 3)
    x, x_hat = torch.rand(5, 1, 2, 3), torch.rand(5, 1, 2, 3)
    torch.testing.assert_close(
        full_read(x, x_hat, None), torch.cat([x.flatten(1), x_hat.flatten(1)], 1)
    )
    h = torch.randn(5, 4)
    expected = (h @ full_write.linear.weight.T + full_write.linear.bias).reshape(5, 1, 2, 3)
    torch.testing.assert_close(full_write(h), expected)


def test_gradients_of_read_and_write_match_finite_differences(float64):
    """gradcheck (central differences, float64) through the attention parameters: the raw
    five numbers of the window, the linear maps from the state (weights, biases) and the
    state itself, for read and write on a tiny rectangular two-channel canvas."""
    torch.manual_seed(0)
    read = GaussianRead(3, height=4, width=5, grid_size=2, channels=2)
    write = GaussianWrite(3, height=4, width=5, grid_size=3, channels=2)
    x = torch.rand(2, 2, 4, 5)
    x_hat = torch.rand(2, 2, 4, 5) - 0.5
    raw = torch.randn(2, 5) * 0.3
    raw.requires_grad_(True)

    def read_raw(raw):
        return read.apply_filterbanks(x, *read.filterbanks_of(read.window_of(raw)))

    assert torch.autograd.gradcheck(read_raw, (raw,))

    def write_raw(raw, patch):
        return write.apply_filterbanks(patch, *write.filterbanks_of(write.window_of(raw)))

    patch = torch.randn(2, 2, 3, 3, requires_grad=True)
    assert torch.autograd.gradcheck(write_raw, (raw, patch))

    h = torch.randn(2, 3, requires_grad=True)
    calls = {read: lambda state: read(x, x_hat, state), write: lambda state: write(state)}
    for module, call in calls.items():
        names = [name for name, _ in module.named_parameters()]
        params = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())

        def of_params(*values, module=module, names=names):
            inputs = (x, x_hat, h) if module is read else (h,)
            return torch.func.functional_call(module, dict(zip(names, values)), inputs)

        assert torch.autograd.gradcheck(of_params, params)
        assert torch.autograd.gradcheck(call, (h,))
    # every attention parameter gets a nonzero gradient
    read.zero_grad()
    read(x, x_hat, h).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in read.parameters())


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="grid_size"):
        GaussianRead(4, 8, 8, grid_size=0)
    with pytest.raises(ValueError, match="height"):
        GaussianWrite(4, 0, 8, grid_size=2)
    read = GaussianRead(4, 8, 8, grid_size=2)
    with pytest.raises(ValueError, match=r"x_hat: expected images of shape \(\.\.\., 1, 8, 8\)"):
        read(torch.rand(3, 1, 8, 8), torch.rand(3, 64), torch.randn(3, 4))
    with pytest.raises(ValueError, match="x: expected"):
        FullRead(8, 8)(torch.rand(3, 2, 8, 8), torch.rand(3, 1, 8, 8))


@pytest.mark.parametrize("height,width,N", [(28, 28, 2), (28, 28, 5), (9, 13, 3)])
def test_initial_windows_tile_the_canvas(float64, height, width, N):
    """Untrained heads (any h) read a blurred image and write over the whole canvas: the
    regression for DRAW stuck at the pixel marginal, where a 2 x 2 read saw only the four
    corner pixels and a 5 x 5 write changed the canvas by about w / 30 per pixel."""
    torch.manual_seed(0)
    read = GaussianRead(6, height, width, N)
    write = GaussianWrite(6, height, width, N)
    h = torch.zeros(3, 6)  # the decoder's initial state
    w = read.window(h)
    assert torch.allclose(w.center_x, torch.full((3,), (width + 1) / 2))
    assert torch.allclose(w.stride, torch.full((3,), max(height, width) / N))
    assert torch.allclose(w.log_variance.exp().sqrt(), w.stride / 2)
    # every pixel reaches the glimpse with a weight of at least a third of the average
    fx, fy, gamma = read.filterbanks(h)
    assert torch.equal(gamma, torch.ones(3))
    for f, size in ((fx, width), (fy, height)):
        assert f.sum(-2).min() > N / size / 3
    # a patch of ones writes an update of mean exactly one, nowhere below a tenth
    fx, fy, gamma = write.filterbanks(h)
    update = write.apply_filterbanks(torch.ones(3, 1, N, N), fx, fy, gamma)
    torch.testing.assert_close(update.mean((-1, -2, -3)), torch.ones(3))
    assert update.min() > 0.1
