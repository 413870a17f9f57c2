"""ReplicatedSoftmaxRBM: exact log Z_D against brute force over all (v, h), the
count-vector and word-sequence normalizations, the document-length scaling of the hidden
biases, count validation, the Gibbs sampler against exact enumeration, AIS against exact."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from pyrogen.distributions.replicated_softmax import (
    ReplicatedSoftmaxAnnealingPath,
    ReplicatedSoftmaxRBM,
    log_multinomial_coefficient,
)
from pyrogen.infer.ais import ais


def random_rsm(K, H, seed, weight_scale=1.0, dtype=torch.float64, **kwargs):
    g = torch.Generator().manual_seed(seed)
    W = weight_scale * torch.randn(K, H, generator=g, dtype=dtype)
    b = torch.randn(K, generator=g, dtype=dtype)
    c = 0.5 * torch.randn(H, generator=g, dtype=dtype)
    return ReplicatedSoftmaxRBM(W, b, c, **kwargs)


def params(rsm):
    return [t.detach().numpy().astype(np.float64) for t in rsm.parameter_tensors()]


def np_energy(rsm, v, h):
    """E(v, h) of one word sequence with counts v (module docs), in numpy."""
    W, b, c = params(rsm)
    v, h = np.asarray(v, np.float64), np.asarray(h, np.float64)
    D = v.sum(-1)
    return -(v * b).sum(-1) - np.einsum("...k,kj,...j->...", v, W, h) - D * (h * c).sum(-1)


def count_vectors(K, D):
    return np.array([v for v in itertools.product(range(D + 1), repeat=K) if sum(v) == D], float)


def hidden_states(H):
    return np.array(list(itertools.product([0.0, 1.0], repeat=H)))


def np_log_coefficient(v):
    return np.array([math.lgamma(sum(r) + 1) - sum(math.lgamma(x + 1) for x in r) for r in v])


# ---- log Z_D and the two normalizations ----------------------------------------------------


@pytest.mark.parametrize("H", [1, 2, 3])
def test_exact_log_partition_equals_brute_force(H):
    """Over all count vectors of length D (K = 3, D <= 4) and all h, with the multinomial
    coefficient; and over all K^D word sequences, without it: the same Z_D (1e-8)."""
    K = 3
    rsm = random_rsm(K, H, seed=H)
    hs = hidden_states(H)
    for D in range(5):
        vs = count_vectors(K, D)
        log_terms = np_log_coefficient(vs)[:, None] - np_energy(rsm, vs[:, None, :], hs[None])
        by_counts = logsumexp(log_terms)
        seqs = np.array(list(itertools.product(range(K), repeat=D)), int).reshape(K**D, D)
        seq_counts = np.stack([np.bincount(s, minlength=K) for s in seqs]).astype(float)
        by_sequences = logsumexp(-np_energy(rsm, seq_counts[:, None, :], hs[None]))
        lz = rsm.log_partition(length=D)
        assert lz.is_exact and float(lz.stderr) == 0.0
        assert abs(float(lz.log_z) - by_counts) < 1e-8
        assert abs(float(lz.log_z) - by_sequences) < 1e-8


def test_log_prob_sums_to_one_for_every_length_in_one_mixed_batch():
    K = 3
    rsm = random_rsm(K, 3, seed=10)
    vs = np.concatenate([count_vectors(K, D) for D in range(6)])
    perm = np.random.default_rng(0).permutation(len(vs))
    v = torch.tensor(vs[perm])
    lp = rsm.log_prob(v)
    lengths = v.sum(-1)
    for D in range(6):
        total = lp[lengths == D].exp().sum()
        assert abs(float(total) - 1) < 1e-10
        # each document uses the Z of its own length
        own = rsm.unnormalized_log_prob(v[lengths == D]) - rsm.log_partition(length=D).log_z
        torch.testing.assert_close(lp[lengths == D], own, rtol=0, atol=1e-12)
    assert float(lp[lengths == 0]) == 0.0  # the empty document is certain


def test_sequence_log_prob_sums_to_one_over_word_sequences():
    K, D = 3, 4
    rsm = random_rsm(K, 2, seed=11)
    seqs = np.array(list(itertools.product(range(K), repeat=D)))
    counts = torch.tensor(np.stack([np.bincount(s, minlength=K) for s in seqs]), dtype=float)
    assert abs(float(rsm.sequence_log_prob(counts).exp().sum()) - 1) < 1e-10
    torch.testing.assert_close(
        rsm.log_prob(counts) - rsm.sequence_log_prob(counts),
        torch.tensor(np_log_coefficient(counts.numpy())),
    )


def test_free_energies_match_brute_force_over_hidden_states():
    rsm = random_rsm(4, 3, seed=12)
    v = torch.tensor([[0, 2, 1, 3], [5, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=float)
    hs = hidden_states(3)
    seq = logsumexp(-np_energy(rsm, v.numpy()[:, None, :], hs[None]), axis=1)
    np.testing.assert_allclose(rsm.sequence_free_energy(v).numpy(), -seq, atol=1e-10)
    counts = seq + np_log_coefficient(v.numpy())
    np.testing.assert_allclose(rsm.unnormalized_log_prob(v).numpy(), counts, atol=1e-10)
    np.testing.assert_allclose(rsm.free_energy(v).numpy(), -counts, atol=1e-10)
    np.testing.assert_allclose(
        rsm.energy(v[:, None, :], torch.tensor(hs)[None]).numpy(),
        np_energy(rsm, v.numpy()[:, None, :], hs[None]),
        atol=1e-12,
    )


# ---- document-length scaling -----------------------------------------------------------------


def test_hidden_logits_scale_the_hidden_bias_by_the_document_length():
    rsm = random_rsm(5, 4, seed=13)
    W, b, c = rsm.parameter_tensors()
    v = torch.tensor([[1, 0, 2, 0, 0], [3, 1, 0, 4, 2], [0, 0, 0, 0, 0]], dtype=float)
    D = v.sum(-1, keepdim=True)
    torch.testing.assert_close(rsm.hidden_logits(v) - v @ W, D * c, rtol=0, atol=1e-13)
    # doubling a document doubles D c + v W; with an unscaled bias c + v W it would not
    torch.testing.assert_close(
        rsm.hidden_logits(2 * v), 2 * rsm.hidden_logits(v), rtol=0, atol=1e-12
    )
    assert torch.all(c.abs() > 1e-3)
    # and the conditional is the energy's: p(h | v) proportional to exp(-E(v, h))
    hs = hidden_states(4)
    log_joint = -np_energy(rsm, v.numpy()[:, None, :], hs[None])
    expected = log_joint - logsumexp(log_joint, axis=1, keepdims=True)
    ours = rsm.hidden_given_visible(v).log_prob(torch.tensor(hs)[:, None, :]).sum(-1).T
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-10)


def test_visible_conditional_is_the_energy_conditional():
    K, D = 3, 4
    rsm = random_rsm(K, 3, seed=14)
    W, b, c = params(rsm)
    hs = hidden_states(3)
    vs = count_vectors(K, D)
    d = rsm.visible_given_hidden(torch.tensor(hs), length=D)
    ours = d.log_prob(torch.tensor(vs)[:, None, :]).numpy()  # (num_v, num_h)
    log_joint = np_log_coefficient(vs)[:, None] - np_energy(rsm, vs[:, None, :], hs[None])
    np.testing.assert_allclose(ours, log_joint - logsumexp(log_joint, axis=0), atol=1e-10)
    words = rsm.word_given_hidden(torch.tensor(hs)).probs.numpy()
    z = b + hs @ W.T
    np.testing.assert_allclose(words, np.exp(z - logsumexp(z, axis=1, keepdims=True)), atol=1e-12)


# ---- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        ([1.0, -1.0, 2.0], r"found -1.0 \(negative\) at index \(1, 1\)"),
        ([1.0, 2.5, 0.0], r"found 2.5 \(not a non-negative integer\) at index \(1, 1\)"),
        ([float("nan"), 1.0, 0.0], r"found nan .* at index \(1, 0\)"),
    ],
)
def test_invalid_counts_are_rejected(bad, match):
    rsm = random_rsm(3, 2, seed=15)
    value = torch.tensor([[0.0, 1.0, 1.0], bad], dtype=torch.float64)
    for fn in (
        rsm.log_prob,
        rsm.hidden_logits,
        rsm.hidden_given_visible,
        rsm.unnormalized_log_prob,
        rsm.free_energy,
        rsm.sequence_log_prob,
    ):
        with pytest.raises(ValueError, match="word counts") as info:
            fn(value)
        assert info.match(match)
    # integer tensors are accepted, negative ones rejected
    assert rsm.log_prob(torch.tensor([0, 2, 1])).dtype == torch.float64
    with pytest.raises(ValueError, match=r"found -3 \(negative\) at index \(2,\)"):
        rsm.log_prob(torch.tensor([0, 2, -3]))
    # with validation off nothing is checked
    off = random_rsm(3, 2, seed=15, validate_args=False)
    off.hidden_logits(value)


def test_bad_shapes_and_lengths_raise():
    W, b, c = torch.randn(4, 2), torch.randn(4), torch.randn(2)
    with pytest.raises(ValueError, match="weight must be a 2-D tensor"):
        ReplicatedSoftmaxRBM(W[0], b, c)
    with pytest.raises(
        ValueError, match=r"visible_bias must have shape \(num_visible,\) = \(4,\), got \(3,\)"
    ):
        ReplicatedSoftmaxRBM(W, b[:3], c)
    with pytest.raises(ValueError, match="length must be a non-negative integer"):
        ReplicatedSoftmaxRBM(W, b, c, length=2.5)
    rsm = ReplicatedSoftmaxRBM(W, b, c)
    with pytest.raises(
        ValueError,
        match=r"value: wrong size of word counts over the vocabulary: expected shape "
        r"\(\.\.\., 4\), found \(3,\)",
    ):
        rsm.log_prob(torch.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="length is needed"):
        rsm.log_partition()
    with pytest.raises(ValueError, match="length is needed"):
        rsm.sample()
    with torch.no_grad():  # cached per length (exact values are recomputed under grad)
        assert rsm.log_partition(length=3) is rsm.log_partition(length=3)
        assert rsm.log_partition(length=3) is not rsm.log_partition(length=4)


# ---- Gibbs sampling -------------------------------------------------------------------------


def test_gibbs_sampler_matches_exact_distribution():
    """K = 3, D = 4 (15 count vectors), H = 3; 20000 independent chains, 100 sweeps. The
    empirical distribution passes a chi-square test against exp(log_prob) at level 1e-4, so
    a sampler whose chains have mixed fails with probability 1e-4 (seeded); the uniform
    start is rejected (the test has power)."""
    torch.manual_seed(0)
    K, D = 3, 4
    rsm = random_rsm(K, 3, seed=16, length=D, gibbs_steps=100)
    vs = torch.tensor(count_vectors(K, D))
    p = rsm.log_prob(vs).exp().numpy()

    def observed(x):
        radix = torch.tensor([(D + 1) ** 2, D + 1, 1])
        table = {int(code): i for i, code in enumerate(vs.long() @ radix)}
        codes = (x.long() @ radix).tolist()
        return np.bincount([table[k] for k in codes], minlength=len(vs))

    x = rsm.sample((20000,))
    assert x.shape == (20000, K) and torch.all(x.sum(-1) == D)
    assert stats.chisquare(observed(x), p * len(x)).pvalue > 1e-4
    start = rsm.init_chains(20000)[0]
    assert stats.chisquare(observed(start), p * len(start)).pvalue < 1e-4


def test_gibbs_keeps_each_chains_length():
    rsm = random_rsm(6, 4, seed=17)
    init = torch.tensor([[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [3, 0, 2, 0, 0, 7]], dtype=float)
    x = rsm.sample((3,), num_steps=5, init=init)
    torch.testing.assert_close(x.sum(-1), init.sum(-1))
    state = rsm.gibbs_step((init,))
    torch.testing.assert_close(state[0].sum(-1), init.sum(-1))
    assert state[1].shape == (3, 4)
    assert rsm.sample((2, 5), num_steps=2, length=9).sum(-1).eq(9).all()
    e = random_rsm(6, 4, seed=17, length=4).expand((3,))
    assert e.batch_shape == (3,) and e.sample((2,), num_steps=2).shape == (2, 3, 6)
    assert e.log_prob(torch.ones(2, 3, 6)).shape == (2, 3)


# ---- AIS ---------------------------------------------------------------------------------------


def test_ais_within_three_standard_errors():
    """20 seeded random models (K = 12, H = 4..12, D = 5..43), 100 chains, 1000
    temperatures: the exact log Z_D lies within 3 reported standard errors (inside the
    sandwich) in at least 19."""
    hits, errors = 0, []
    for trial in range(20):
        H, D = 4 + trial % 9, 5 + 2 * trial
        rsm = random_rsm(12, H, seed=200 + trial, weight_scale=0.3)
        torch.manual_seed(trial)
        est = rsm.log_partition(method="ais", length=D, num_chains=100, betas=1000)
        exact = float(rsm.log_partition(method="exact", length=D).log_z)
        assert est.method == "ais" and float(est.stderr) > 0
        inside = float(est.lower) <= exact <= float(est.upper)
        assert inside == (abs(float(est.log_z) - exact) <= 3 * float(est.stderr))
        hits += inside
        errors.append(float(est.stderr))
    assert hits >= 19
    assert max(errors) < 0.2  # the standard errors are small, not vacuous


def test_ais_from_data_word_frequencies():
    torch.manual_seed(2)
    D = 20
    rsm = random_rsm(10, 8, seed=18, weight_scale=0.4, length=D)
    data = rsm.sample((300,), num_steps=30)
    path = rsm.annealing_path(data)
    assert isinstance(path, ReplicatedSoftmaxAnnealingPath) and path.length == D
    freq = (data.sum(0) + 0.5) / (data.sum() + 10 * 0.5)
    torch.testing.assert_close(path.base_logits.exp(), freq)
    est = ais(path, num_chains=100, betas=1000)
    exact = float(rsm.log_partition().log_z)
    assert abs(float(est.log_z) - exact) < 3 * float(est.stderr) + 1e-3


def test_ais_path_endpoints():
    D = 6
    rsm = random_rsm(4, 3, seed=19, length=D)
    path = rsm.annealing_path(torch.tensor([[1, 0, 2, 3], [0, 0, 6, 0]], dtype=float))
    v = path.sample_base(8)
    assert torch.all(v[0].sum(-1) == D)
    cache = path.prepare(v)
    coef = log_multinomial_coefficient(v[0])
    torch.testing.assert_close(path.log_f(v, cache, 1.0) + coef, rsm.unnormalized_log_prob(v[0]))
    base = torch.distributions.Multinomial(D, logits=path.base_logits).log_prob(v[0])
    torch.testing.assert_close(path.log_f(v, cache, 0.0) + coef - path.log_z_base, base)


# ---- dtypes, gradients, devices ------------------------------------------------------------


def test_float32_agrees_with_float64():
    rsm64 = random_rsm(6, 5, seed=20)
    rsm32 = ReplicatedSoftmaxRBM(*(t.float() for t in rsm64.parameter_tensors()))
    v = torch.tensor([[0, 1, 2, 0, 0, 3], [4, 0, 0, 1, 1, 0]], dtype=torch.float64)
    lp32 = rsm32.log_prob(v.float())
    assert lp32.dtype == torch.float32
    torch.testing.assert_close(lp32.double(), rsm64.log_prob(v), rtol=1e-5, atol=1e-4)
    assert rsm32.sample((2,), num_steps=2, length=5).dtype == torch.float32


def test_log_prob_is_differentiable():
    rsm = random_rsm(4, 3, seed=21)
    v = torch.tensor([[0, 1, 2, 0], [4, 0, 0, 1], [1, 1, 1, 1]], dtype=torch.float64)
    ps = [t.clone().requires_grad_() for t in rsm.parameter_tensors()]
    assert torch.autograd.gradcheck(lambda W, b, c: ReplicatedSoftmaxRBM(W, b, c).log_prob(v), ps)


@pytest.mark.requires_cuda
def test_cuda_matches_cpu():
    rsm = random_rsm(8, 6, seed=22, dtype=torch.float32, length=10)
    gpu = ReplicatedSoftmaxRBM(*(t.cuda() for t in rsm.parameter_tensors()), length=10)
    v = torch.tensor([[0, 1, 2, 0, 0, 3, 0, 4], [4, 0, 0, 1, 1, 0, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(gpu.log_prob(v.cuda()).cpu(), rsm.log_prob(v), rtol=1e-5, atol=1e-4)
    assert gpu.sample((3,), num_steps=3).device.type == "cuda"
    est = gpu.log_partition(method="ais", num_chains=50, betas=200)
    assert est.log_z.device.type == "cuda"


def test_energy_log_likelihood_uses_each_documents_own_length():
    # the evaluator itself (not only the model) scores a mixed-length batch under Z_D of
    # each document's length: it equals log_prob, which is normalised per length
    from pyrogen.evaluate import energy_log_likelihood

    torch.manual_seed(0)
    rsm = ReplicatedSoftmaxRBM(torch.randn(8, 5) * 0.3, torch.randn(8) * 0.3, torch.zeros(5))
    x = torch.cat(
        [torch.distributions.Multinomial(n, torch.ones(8)).sample((3,)) for n in (2, 6, 9)]
    )
    result = energy_log_likelihood(rsm, x, progress=False)
    torch.testing.assert_close(result.per_example, rsm.log_prob(x).double())
    assert result.diagnostics["num_lengths"] == 3 and result.is_exact
