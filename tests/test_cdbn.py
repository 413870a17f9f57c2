"""Convolutional DBN: greedy layer-wise training of two convolutional RBMs with
probabilistic max-pooling on natural-image patches through the shared stacking mechanism
(the second layer sees the first's pooling probabilities, the first layer frozen), the
filters of the second layer drawn in input space, bad layer specifications."""

import math

import pytest
import torch

from pyrogen.data import DatasetNotFoundError
from pyrogen.data.patches import natural_image_patches
from pyrogen.families.rbm import cd_learner
from pyrogen.infer import ContrastiveDivergence
from pyrogen.models.cdbn import ConvolutionalDBN
from pyrogen.train import StagedLearner, train

LAYERS = [
    dict(filters=4, filter_size=5, pooling=2, visible_units="gaussian", init_scale=0.1),
    dict(filters=3, filter_size=2, pooling=1, sparsity_target=0.1, sparsity_cost=1.0),
]


def _patches():
    try:
        x = natural_image_patches(300, size=10, seed=0, whiten="zca")
    except DatasetNotFoundError as e:  # neither the data folder nor scikit-image
        pytest.skip(str(e))
    return x / x.std()  # unit variance for unit-variance Gaussian visible units


def test_second_layer_trains_on_the_first_layers_pooled_activations():
    torch.manual_seed(0)
    data = _patches()
    cdbn = ConvolutionalDBN((1, 10, 10), LAYERS)
    first, second = cdbn.layers
    assert first.output_shape == (4, 3, 3) and second.input_shape == (4, 3, 3)
    init2 = [p.detach().clone() for p in second.parameters()]
    seen = []  # the batches the second layer's learner gets, and layer 1 at that time

    def learner_for(k, layer):
        # Gaussian visible units need a small rate (1e-3 diverges here), and CD-1
        lr, loss = (3e-4, ContrastiveDivergence(k=1)) if k == 0 else (1e-2, None)
        loss = loss or ContrastiveDivergence(k=1, persistent=True)
        learner = cd_learner(layer, loss, lr, 0.5, 0.0)
        if k == 1:
            step = learner.step

            def recording_step(batch):
                seen.append((batch.clone(), [p.detach().clone() for p in first.parameters()]))
                return step(batch)

            learner.step = recording_step
        return learner

    stages = cdbn.stages(learner_for, epochs=3)
    assert [s[0] for s in stages] == ["layer1", "layer2"]
    init1 = [p.detach().clone() for p in first.parameters()]
    train(StagedLearner(stages), data, epochs=6, batch_size=50, seed=0, progress=False)
    assert len(seen) == 18  # 3 epochs of 6 batches
    # layer 1 did not move while layer 2 trained, and layer 2 saw its pooling probabilities
    final1 = [p.detach() for p in first.parameters()]
    acts = first.up(data)
    assert acts.shape == (300, 36) and 0 <= acts.min() and acts.max() <= 1 and acts.std() > 0.01
    for batch, params in seen:
        for p, q in zip(params, final1):
            assert torch.equal(p, q)
        distance = torch.cdist(batch.double(), acts.double()).min(1).values
        assert distance.max() < 1e-6 and batch.shape == (50, 36)
    # layer 1 moved and stayed finite; layer 2 learned: a lower reconstruction error of the
    # pooled activations than at its initialisation (seeded)
    for p, q in zip(final1, init1):
        assert torch.isfinite(p).all() and not torch.equal(p, q)
    fresh = ConvolutionalDBN((1, 10, 10), LAYERS).layers[1]
    with torch.no_grad():
        for p, q in zip(fresh.parameters(), init2):
            p.copy_(q)
    err0 = (fresh.reconstruct(acts) - acts).square().mean().item()
    err1 = (second.reconstruct(acts) - acts).square().mean().item()
    print(f"layer 2 reconstruction error: {err0:.4f} -> {err1:.4f}")
    assert err1 < 0.8 * err0, (err0, err1)
    assert cdbn.features(data).shape == (300, 36 + 3 * 2 * 2)
    assert torch.equal(cdbn.up(data), second.up(acts))


def test_second_layer_filters_in_input_space_are_shifted_sums_of_first_layer_filters():
    cdbn = ConvolutionalDBN((1, 10, 10), LAYERS)
    W1 = cdbn.layers[0].weight.detach()
    with torch.no_grad():
        cdbn.layers[1].weight.zero_()
        cdbn.layers[1].weight[2, 1, 1, 0] = 2.0  # unit 2: twice filter 1, one pooled row down
        cdbn.layers[1].weight[2, 3, 0, 1] = -1.0  # minus filter 3, one pooled column right
    pictures = cdbn.filters_in_input_space(1)
    assert pictures.shape == (3, 1, 7, 7)  # 5 + (2 - 1) * 2
    want = torch.zeros(1, 7, 7)
    want[:, 2:7, 0:5] += 2 * W1[1]
    want[:, 0:5, 2:7] -= W1[3]
    torch.testing.assert_close(pictures[2], want)
    assert torch.equal(pictures[0], torch.zeros(1, 7, 7))
    assert torch.equal(cdbn.filters_in_input_space(0), W1)


def test_bad_layer_specifications_are_value_errors():
    with pytest.raises(ValueError, match=r"layers\[0\].*pooling 2 must divide"):
        ConvolutionalDBN((1, 10, 10), [dict(filters=2, filter_size=4, pooling=2)])
    with pytest.raises(ValueError, match=r"layers\[1\].*smaller than the filters"):
        ConvolutionalDBN(
            (1, 10, 10),
            [dict(filters=2, filter_size=5, pooling=2), dict(filters=2, filter_size=4)],
        )
    with pytest.raises(ValueError, match=r"layers\[1\]: visible_units must be 'binary'"):
        ConvolutionalDBN(
            (1, 10, 10),
            [
                dict(filters=2, filter_size=5, pooling=2),
                dict(filters=2, filter_size=2, visible_units="gaussian"),
            ],
        )
    cdbn = ConvolutionalDBN((1, 10, 10), LAYERS)
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 100\)"):
        cdbn.layers[0].up(torch.zeros(3, 99))


def test_learner_step_is_the_position_averaged_cd_gradient_plus_decay_and_sparsity_rule():
    from pyrogen.models.cdbn import ConvRBMLayer, ConvRBMLearner

    torch.manual_seed(0)
    layer = ConvRBMLayer(
        (1, 6, 6), 2, 3, 2, visible_units="gaussian", sparsity_target=0.05, init_scale=0.3
    )
    x = torch.randn(5, 36)
    learner = ConvRBMLearner(layer, lr=0.1, weight_decay=0.01, sparsity_cost=5.0)
    before = [p.detach().clone() for p in layer.parameters()]
    torch.manual_seed(1)
    learner.step(x)
    # by hand, with the same random numbers: h ~ p(h | x), reconstruction E[v | h]
    W, b, c = (p.clone().requires_grad_() for p in before)
    from pyrogen.distributions.conv_rbm import GaussianConvolutionalRBM

    dist = GaussianConvolutionalRBM(W, b, c, image_shape=(6, 6), pooling=2)
    torch.manual_seed(1)
    with torch.no_grad():
        neg = dist.visible_mean(dist.sample_hidden(x))
    ((dist.free_energy(x).sum() - dist.free_energy(neg).sum()) / (5 * 16)).backward()
    with torch.no_grad():
        q = dist.group_activations(x)
    want = [
        before[0] - 0.1 * (W.grad + 0.01 * before[0]),
        before[1] - 0.1 * b.grad,
        before[2] - 0.1 * (c.grad + 5.0 * (q - 0.05)),
    ]
    for p, w in zip(layer.parameters(), want):
        torch.testing.assert_close(p.detach(), w)
    with pytest.raises(ValueError, match="lr must be positive"):
        ConvRBMLearner(layer, lr=0.0)
    with pytest.raises(ValueError, match="momentum must be in"):
        ConvRBMLearner(layer, momentum=1.0)


def test_one_over_f_whitening_scales_each_grating_by_the_ramp_and_cutoff():
    from pyrogen.models.cdbn import ConvRBMLayer, whiten_one_over_f

    # two cosine gratings on a 64 x 64 grid, at 4/64 and 16/64 cycles per pixel: the
    # filter R(f) = f exp(-(f / f0)^4) multiplies each amplitude (closed form), then the
    # image is scaled to unit variance
    n, f0 = 64, 0.2
    i = torch.arange(n, dtype=torch.float64)
    img = 3.0 * torch.cos(2 * torch.pi * 4 * i / n)[None, :] + torch.cos(2 * torch.pi * 16 * i / n)[
        :, None
    ].expand(n, n)
    out = whiten_one_over_f(img, cutoff=f0).double()

    def ramp(f):
        return f * math.exp(-((f / f0) ** 4))

    a1, a2 = 3.0 * ramp(4 / n), ramp(16 / n)
    want = (
        a1 * torch.cos(2 * torch.pi * 4 * i / n)[None, :]
        + a2 * torch.cos(2 * torch.pi * 16 * i / n)[:, None]
    )
    want = want / want.std()  # unit variance (unbiased, as the code)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    assert whiten_one_over_f(img[None]).shape == (1, n, n)
    with pytest.raises(ValueError, match="cutoff must be in"):
        whiten_one_over_f(img, cutoff=0.7)
    layer = ConvRBMLayer((1, 6, 6), 3, 3, 2, init_hidden_bias=-2.5)
    assert torch.equal(layer.hidden_bias.detach(), torch.full((3,), -2.5))
    with pytest.raises(ValueError, match="init_hidden_bias must be finite"):
        ConvRBMLayer((1, 6, 6), 3, 3, 2, init_hidden_bias=float("nan"))


def test_annealed_step_is_the_plain_step_on_the_scaled_batch_and_the_schedule_is_geometric():
    from pyrogen.models.cdbn import ConvRBMLayer, ConvRBMLearner

    torch.manual_seed(0)
    x = torch.randn(4, 36)
    layers, learners = [], []
    for anneal in (True, False):
        torch.manual_seed(0)
        layer = ConvRBMLayer((1, 6, 6), 2, 3, 2, visible_units="gaussian", init_scale=0.3)
        kw = dict(anneal_from=0.25, anneal_steps=4) if anneal else {}
        layers.append(layer)
        learners.append(ConvRBMLearner(layer, lr=0.1, **kw))
    # s_t = a^(1 - t/T): 0.25, 0.25^(3/4), 0.25^(1/2) = 0.5, 0.25^(1/4), then 1
    annealed, plain = learners
    want = [0.25, 0.25**0.75, 0.5, 0.25**0.25, 1.0, 1.0]
    assert [annealed.input_scale(t) for t in range(6)] == pytest.approx(want, rel=1e-12)
    for t in range(6):  # each annealed step equals a plain step on s_t times the batch
        torch.manual_seed(t)
        annealed.step(x)
        torch.manual_seed(t)
        plain.step(x * want[t])
        for p, q in zip(*(lay.parameters() for lay in layers)):
            torch.testing.assert_close(p, q)
    assert annealed.state_dict()["steps"] == 6
    with pytest.raises(ValueError, match="anneal_from must be in"):
        ConvRBMLearner(layers[0], anneal_from=1.5)
    with pytest.raises(ValueError, match="anneal_steps must be"):
        ConvRBMLearner(layers[0], anneal_steps=-1)


def test_visible_bias_from_data_makes_a_silent_layer_reconstruct_the_channel_means():
    from pyrogen.models.cdbn import ConvRBMLayer

    torch.manual_seed(0)
    x = torch.rand(10, 2, 6, 6) * torch.tensor([0.05, 0.6])[None, :, None, None]
    layer = ConvRBMLayer((2, 6, 6), 3, 3, 2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.hidden_bias.fill_(-50.0)  # hidden units off: p(v | h = 0) = sigmoid(b)
    layer.init_visible_bias(x)
    recon = layer.reconstruct(x).reshape(10, 2, 6, 6)
    torch.testing.assert_close(recon[0, :, 0, 0], x.mean((0, 2, 3)), atol=1e-6, rtol=0)
    gauss = ConvRBMLayer((1, 6, 6), 3, 3, 2, visible_units="gaussian")
    gauss.init_visible_bias(x[:, :1] + 2.0)
    torch.testing.assert_close(gauss.visible_bias.detach(), (x[:, :1] + 2.0).mean().reshape(1))


def test_whitened_patches_downsample_whiten_cut_and_scale():
    import torch.nn.functional as F

    from pyrogen.models.cdbn import whiten_one_over_f, whitened_patches

    torch.manual_seed(0)
    images = [torch.rand(40, 48), torch.rand(36, 36)]
    p = whitened_patches(images, 50, 10, downsample=2, std=3.0, seed=1)
    assert p.shape == (50, 100)
    assert float(p.std()) == pytest.approx(3.0, rel=1e-5)
    torch.testing.assert_close(p.mean(1), torch.zeros(50), atol=1e-5, rtol=0)
    assert torch.equal(p, whitened_patches(images, 50, 10, downsample=2, std=3.0, seed=1))
    assert not torch.equal(p, whitened_patches(images, 50, 10, downsample=2, std=3.0, seed=2))
    # every patch is a window of one of the downsampled, whitened images (up to centring
    # and one common scale)
    white = [whiten_one_over_f(F.avg_pool2d(im[None, None], 2)[0, 0]) for im in images]
    windows = torch.cat(
        [w.unfold(0, 10, 1).unfold(1, 10, 1).reshape(-1, 100) for w in white]
    ).double()
    windows = windows - windows.mean(1, keepdim=True)
    q = p.double()
    cos = (q / q.norm(dim=1, keepdim=True)) @ (windows / windows.norm(dim=1, keepdim=True)).T
    assert bool((cos.max(1).values > 1 - 1e-6).all())
    crops = whitened_patches(images, None, 12, std=1.0)  # num=None: top-left crops
    assert crops.shape == (2, 144)
    with pytest.raises(ValueError, match=r"smaller than the 20x20 patches"):
        whitened_patches(images, 5, 20, downsample=2)
    with pytest.raises(ValueError, match="grey"):
        whitened_patches([torch.rand(3, 20, 20)], 5, 10)
    with pytest.raises(ValueError, match="num must be"):
        whitened_patches(images, 0, 10)


def test_top_patches_average_the_input_windows_where_a_group_responds_most():
    from pyrogen.models.cdbn import ConvolutionalDBN

    torch.manual_seed(0)
    pattern = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    spec = dict(filters=2, filter_size=3, pooling=2, visible_units="gaussian")
    cdbn = ConvolutionalDBN((1, 12, 12), [spec, dict(filters=3, filter_size=2, pooling=1)])
    with torch.no_grad():  # group 0 detects the cross, group 1 its negative
        cdbn.layers[0].weight.copy_(torch.stack([pattern, -pattern])[:, None] * 4.0)
        cdbn.layers[0].hidden_bias.fill_(-8.0)
    # one cross per image, at a known place; a shifted copy of the images is what is cropped
    x = 0.01 * torch.randn(6, 1, 12, 12)
    places = [(0, 0), (2, 5), (7, 3), (9, 9), (4, 8), (5, 0)]
    for img, (r, c) in zip(x, places):
        img[0, r : r + 3, c : c + 3] += pattern
    top = cdbn.top_patches(x, 0, num=6)
    assert top.shape == (2, 1, 3, 3)
    torch.testing.assert_close(top[0, 0], pattern, atol=0.02, rtol=0)  # every cross, aligned
    crops = cdbn.top_patches(x, 0, num=6, images=x + 5.0)
    torch.testing.assert_close(crops[0, 0], pattern + 5.0, atol=0.02, rtol=0)
    # layer 2: fields of 3 + (2 - 1) * 2 = 5 pixels, at stride 2
    assert cdbn.top_patches(x, 1, num=4).shape == (3, 1, 5, 5)
    with pytest.raises(ValueError, match="images must have the shape of x"):
        cdbn.top_patches(x, 0, images=x[:3])
    with pytest.raises(ValueError, match="layer must be in"):
        cdbn.top_patches(x, 2)
    with pytest.raises(ValueError, match="num must be"):
        cdbn.top_patches(x, 0, num=0)
