"""alignDRAW (pyrogen.models.align_draw) and its caption modules (pyrogen.nn.caption):
alignment and padding exactly, the bidirectional encoder by hand, closed-form KLs, losses,
the caption's effect, training, the evaluator with captions, and errors."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from pyrogen.evaluate import LogLikelihood
from pyrogen.evaluate.importance import batch_seed, example_log_weights
from pyrogen.infer import IWAE
from pyrogen.models.align_draw import AlignDRAW
from pyrogen.models.draw import lstm_step
from pyrogen.nn.caption import CaptionAlignment, CaptionEncoder

V = 5  # words 0-4, padding 5
TINY = dict(
    steps=3,
    latent_dim=2,
    encoder_size=5,
    decoder_size=6,
    read_size=2,
    write_size=2,
    language_size=3,
    alignment_size=4,
    vocab_size=V,
)
# four captions of lengths 3, 1, 4 and 2, padded to 4 with id V
TOKENS = torch.tensor([[0, 1, 2, V], [3, V, V, V], [4, 4, 1, 0], [2, 3, V, V]])
LENGTHS = torch.tensor([3, 1, 4, 2])


def _binary(*shape, p=0.3):
    return (torch.rand(*shape) < p).to(torch.get_default_dtype())


def _lstm_by_hand(u, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step written out (torch's gate order i, f, g, o)."""
    gates = u @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _encoder_and_alignment(seed=0):
    torch.manual_seed(seed)
    enc = CaptionEncoder(V, hidden_size=3, embedding_size=4)
    align = CaptionAlignment(enc.output_size, query_size=6, hidden_size=5)
    return enc, align


# ------------------------------------------------------------------------- caption modules


def test_alignment_weights_sum_to_one_and_are_exactly_zero_at_padding():
    """For queries with two leading (particle) dimensions: the weights over each caption sum
    to 1 (float32 rounding), are exactly 0 at padded positions and positive at words; the
    sentence vector is the weighted sum of the word states, computed here by a loop."""
    enc, align = _encoder_and_alignment()
    states, mask = enc(TOKENS, LENGTHS)
    torch.testing.assert_close(mask, torch.arange(4) < LENGTHS[:, None], rtol=0, atol=0)
    query = torch.randn(2, 3, 4, 6)
    sentence, weights = align(query, states, mask)
    assert weights.shape == (2, 3, 4, 4) and sentence.shape == (2, 3, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 4))
    assert (weights[..., ~mask] == 0).all()
    assert (weights[..., mask] > 0).all()
    assert (states[~mask] == 0).all()  # padded word states are exactly zero
    by_loop = sum(weights[..., k, None] * states[:, k] for k in range(4))
    torch.testing.assert_close(sentence, by_loop)


def test_sentence_vector_ignores_padding_ids_and_appended_padding():
    """Exactly (torch.equal): replacing the ids at padded positions by arbitrary words, or
    appending three more columns of padding, changes neither the word states at words nor
    the sentence vectors nor the weights at words."""
    enc, align = _encoder_and_alignment()
    query = torch.randn(4, 6)
    states, mask = enc(TOKENS, LENGTHS)
    sentence, weights = align(query, states, mask)

    garbage = TOKENS.clone()
    garbage[~mask] = torch.tensor([0, 1, 2, 3, 4, 0])  # words where the padding was
    states_g, mask_g = enc(garbage, LENGTHS)
    sentence_g, weights_g = align(query, states_g, mask_g)
    assert torch.equal(states_g, states) and torch.equal(sentence_g, sentence)
    assert torch.equal(weights_g, weights)

    longer = torch.cat([TOKENS, torch.full((4, 3), V)], dim=1)
    states_l, mask_l = enc(longer)  # lengths inferred from the first padding
    sentence_l, weights_l = align(query, states_l, mask_l)
    assert torch.equal(states_l[:, :4], states) and (states_l[:, 4:] == 0).all()
    assert torch.equal(sentence_l, sentence)
    assert torch.equal(weights_l[:, :4], weights) and (weights_l[:, 4:] == 0).all()


def test_bidirectional_encoder_equals_a_hand_run_lstm(float64):
    """Word states of a caption of length 3 padded to 5: the forward half at word k is the
    LSTM written out and run over words 1..k from zero states; the backward half at word k is
    the other LSTM run from the caption's last word (not from the padding) down to word k. In
    particular the forward state at the last word and the backward state at the first word
    summarise the whole caption."""
    enc, _ = _encoder_and_alignment(3)
    tokens = torch.tensor([[4, 0, 2, V, V]])
    states, _ = enc(tokens)
    e = enc.embedding.weight[tokens[0, :3]]

    def run(lstm, order):
        h = c = torch.zeros(3)
        out = {}
        for k in order:
            h, c = _lstm_by_hand(
                e[k], h, c, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0
            )
            out[k] = h
        return out

    fwd, bwd = run(enc.forward_lstm, [0, 1, 2]), run(enc.backward_lstm, [2, 1, 0])
    with torch.no_grad():
        for k in range(3):
            torch.testing.assert_close(states[0, k, :3], fwd[k])
            torch.testing.assert_close(states[0, k, 3:], bwd[k])
    assert (states[0, 3:] == 0).all()


def test_one_word_caption_aligns_entirely_on_that_word():
    """A caption of one word padded to 4: the weight is exactly 1 on it for any query, and
    the sentence vector is exactly its word state."""
    enc, align = _encoder_and_alignment()
    states, mask = enc(torch.tensor([[2, V, V, V]]))
    for seed in range(3):
        torch.manual_seed(seed)
        sentence, weights = align(torch.randn(7, 1, 6) * 10, states, mask)
        assert torch.equal(weights, torch.tensor([1.0, 0, 0, 0]).expand(7, 1, 4))
        assert torch.equal(sentence, states[:, 0].expand(7, 1, 6))


# ------------------------------------------------------------------------- the model


def test_trace_elbo_and_iwae_with_one_particle_agree_on_identical_samples(float64):
    """Same seed, same draws: pyrogen's IWAE(K=1) loss and gradient equal Pyro's
    Trace_ELBO's for alignDRAW with captions, for every parameter (the caption encoder and
    the alignment get nonzero gradients)."""
    m = AlignDRAW(16, **TINY)
    x = _binary(4, 16)
    grads = []
    for loss in (Trace_ELBO(), IWAE(1, max_plate_nesting=1)):
        m.zero_grad()
        pyro.set_rng_seed(3)
        value = loss.differentiable_loss(m.model, m.guide, x, None, (TOKENS, LENGTHS))
        value.backward()
        grads.append((value.item(), [p.grad.clone() for p in m.parameters()]))
    (v1, g1), (v2, g2) = grads
    assert v1 == pytest.approx(v2, rel=1e-12)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    assert m.caption_encoder.forward_lstm.weight_ih_l0.grad.abs().sum() > 0
    assert m.alignment.score.weight.grad.abs().sum() > 0
    # vectorised particles broadcast through the alignment
    lw = IWAE(7, max_plate_nesting=1)._log_weights(m.model, m.guide, (x, None, TOKENS), {})
    assert lw.log_weights.shape == (7, 4)


def test_learned_prior_kl_is_the_closed_form_between_two_diagonal_gaussians(float64):
    """The prior of step t is N(tanh(W_mu h + b_mu), exp(tanh(W_s h + b_s))^2) at the
    previous decoder state (h = 0 at step 1, the decoder run on [z_1, s_1] at step 2, s_1 the
    alignment at h = 0), and loss_terms' KL(q || p) equals
    0.5 sum(log s_p^2 - log s_q^2 + (s_q^2 + (m_q - m_p)^2) / s_p^2 - 1)."""
    torch.manual_seed(0)
    m = AlignDRAW(16, **{**TINY, "steps": 2})
    with torch.no_grad():
        for p in m.prior_net.parameters():
            p.normal_(0, 0.5)
    x = _binary(4, 16)
    pyro.set_rng_seed(2)
    terms = m.loss_terms(x, TOKENS)
    pyro.set_rng_seed(2)
    guide_tr = poutine.trace(m.guide).get_trace(x, None, TOKENS)
    model_tr = poutine.trace(poutine.replay(m.model, trace=guide_tr)).get_trace(x, None, TOKENS)
    with torch.no_grad():
        layer = m.prior_net.net.output_layer
        encoded = m.encode_captions(TOKENS)
        zero = torch.zeros(4, 6)
        s1, _ = m.alignment(zero, *encoded)
        z1 = guide_tr.nodes["z_1"]["value"]
        h1, _ = lstm_step(m.decoder, torch.cat([z1, s1], -1), (zero, zero))
        for t, h in ((1, zero), (2, h1)):
            out = h @ layer.weight.T + layer.bias
            q = guide_tr.nodes[f"z_{t}"]["fn"].base_dist
            p = model_tr.nodes[f"z_{t}"]["fn"].base_dist
            torch.testing.assert_close(p.loc, torch.tanh(out[:, :2]))
            torch.testing.assert_close(p.scale, torch.exp(torch.tanh(out[:, 2:])))
            closed = 0.5 * (
                2 * p.scale.log()
                - 2 * q.scale.log()
                + (q.scale**2 + (q.loc - p.loc) ** 2) / p.scale**2
                - 1
            ).sum(-1)
            torch.testing.assert_close(terms["kl"][:, t - 1], closed)
    assert (terms["kl"] > 0).all()


def test_the_caption_changes_the_decoder_means_for_the_same_z():
    """With z_1..z_T held fixed, the final canvas (the Bernoulli logits) differs between two
    different captions and is identical for the same caption; only the words matter (the
    same caption with other padding ids gives the same canvas, exactly)."""
    m = AlignDRAW(16, **TINY)
    z = {f"z_{t}": torch.randn(4, 2) for t in (1, 2, 3)}
    fixed = poutine.condition(m.model, data=z)
    with torch.no_grad():
        a = fixed(None, 4, (TOKENS, LENGTHS))
        again = fixed(None, 4, (TOKENS, LENGTHS))
        other = TOKENS.clone()
        other[:, 0] = (other[:, 0] + 1) % V  # another first word in every caption
        b = fixed(None, 4, (other, LENGTHS))
        garbage = torch.where(torch.arange(4) < LENGTHS[:, None], TOKENS, 1)
        c = fixed(None, 4, (garbage, LENGTHS))
    assert torch.equal(a, again) and torch.equal(a, c)
    assert ((a - b).abs().amax(-1) > 1e-4).all()


def test_sample_from_token_ids_and_from_text():
    """sample(captions): one image per caption, binary, with canvases (steps, B, D) and
    alignments (steps, B, L) on request (rows sum to 1, zero at padding); the protocol form
    sample(n, context=captions) and captions as text (the MNIST-with-captions vocabulary)."""
    m = AlignDRAW(16, **TINY)
    x, canvases, alignments = m.sample(
        TOKENS, lengths=LENGTHS, return_canvases=True, return_alignments=True
    )
    assert x.shape == (4, 16) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert canvases.shape == (3, 4, 16) and alignments.shape == (3, 4, 4)
    torch.testing.assert_close(alignments.sum(-1), torch.ones(3, 4))
    assert (alignments[:, torch.arange(4) >= LENGTHS[:, None]] == 0).all()
    assert m.sample(4, context=TOKENS).shape == (4, 16)
    text = AlignDRAW(36, **{**TINY, "vocab_size": 22})
    captions = ["the digit 3 is at the top left of the image .", "the digit 1 is on the left of"]
    assert text.sample(captions, mean=True).shape == (2, 36)


def test_temperature_zero_draws_each_z_at_the_learned_priors_mean():
    """With temperature=0 the images do not depend on the seed, and replaying the
    (untempered) model on the z_t drawn shows each z_t equal to the mean of the learned
    prior p(z_t | y, z_<t) at its step."""
    from pyrogen.models.draw import _TemperedLatents

    m = AlignDRAW(16, **TINY)
    context = (TOKENS, LENGTHS)
    pyro.set_rng_seed(0)
    a = m.sample(TOKENS, lengths=LENGTHS, mean=True, temperature=0)
    pyro.set_rng_seed(1)
    b = m.sample(TOKENS, lengths=LENGTHS, mean=True, temperature=0)
    assert torch.equal(a, b)
    with torch.no_grad():
        with poutine.trace() as tr, _TemperedLatents(0):
            m.model(None, num_samples=4, context=context)
        zs = {f"z_{t}": tr.trace.nodes[f"z_{t}"]["value"] for t in range(1, 4)}
        with poutine.trace() as replay, poutine.condition(data=zs):
            m.model(None, num_samples=4, context=context)
    for name, z in zs.items():
        torch.testing.assert_close(z, replay.trace.nodes[name]["fn"].base_dist.loc)
    pyro.set_rng_seed(2)
    c = m.sample(TOKENS, lengths=LENGTHS, mean=True, temperature=0.5)
    assert (c - a).abs().amax() > 1e-4


@pytest.fixture(scope="module")
def synthetic():
    """40 captions of one word, 0 or 1, and 4x4 images: word 0 lights the left half,
    word 1 the right half (each lit pixel on with probability 0.9, the others 0.05)."""
    g = torch.Generator().manual_seed(0)
    words = torch.randint(0, 2, (40,), generator=g)
    left = (torch.arange(16) % 4 < 2).float()
    p = torch.where(words[:, None] == 0, left, 1 - left) * 0.85 + 0.05
    x = torch.bernoulli(p, generator=g)
    tokens = torch.stack([words, torch.full_like(words, V)], dim=1)
    return x, tokens


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_a_few_svi_steps_on_synthetic_captions_lower_the_loss(synthetic, objective):
    """40 Adam steps (lr 0.03, full batch, seed 0) with plain Pyro SVI and Trace_ELBO, or
    pyrogen's IWAE(K=3), lower the analytic-KL bound (loss_terms, 8 draws per image, seed 1)
    by more than 3 nats per image, and the trained model reads the caption: the bound with
    the words swapped (0 <-> 1) is worse by more than 1 nat per image.
    Seen: elbo 11.97 -> 4.87 (swapped 39.67), iwae 11.97 -> 4.89 (swapped 40.60)."""
    x, tokens = synthetic
    pyro.set_rng_seed(0)
    m = AlignDRAW(
        16,
        **{**TINY, "latent_dim": 4, "decoder_size": 16, "encoder_size": 16},
        attention=False,
        pixel_mean=x.mean(0),
    )

    def bound(words):
        pyro.set_rng_seed(1)
        with torch.no_grad():
            terms = m.loss_terms(x.repeat(8, 1), words.repeat(8, 1))
            return (terms["reconstruction"] + terms["kl"].sum(-1)).mean().item()

    swapped = tokens.clone()
    swapped[:, 0] = 1 - swapped[:, 0]
    before = bound(tokens)
    loss = Trace_ELBO() if objective == "elbo" else IWAE(3, max_plate_nesting=1)
    svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": 0.03}), loss)
    for _ in range(40):
        svi.step(x, None, tokens)
    after, after_swapped = bound(tokens), bound(swapped)
    print(f"{objective}: {before:.2f} -> {after:.2f} (swapped {after_swapped:.2f})")
    assert after < before - 3, (before, after)
    assert after_swapped > after + 1, (after, after_swapped)


def test_log_likelihood_with_captions_through_the_shared_evaluator(float64):
    """IS with K = 400 (seed 0): the estimate is a LogLikelihood at least the average
    ELBO minus 0.05; batched by 2 with the captions in shuffled order (and the images in the
    same order), each example's estimate equals, bit for bit, the evaluator run by hand on
    that batch with that batch's captions and seed: the captions travel with their images;
    captions as one tensor (lengths inferred) give the same estimates."""
    m = AlignDRAW(16, **TINY)
    x = _binary(4, 16)
    est = m.log_likelihood(x, TOKENS, num_samples=400, progress=False, seed=0, diagnostics=False)
    assert isinstance(est, LogLikelihood)
    pyro.set_rng_seed(0)
    with torch.no_grad():
        terms = m.loss_terms(x.repeat(200, 1), TOKENS.repeat(200, 1))
        elbo = -(terms["reconstruction"] + terms["kl"].sum(-1)).mean()
    assert est.mean >= elbo.item() - 0.05

    perm = torch.tensor([2, 0, 3, 1])
    xs, ts, ls = x[perm], TOKENS[perm], LENGTHS[perm]
    options = dict(
        num_samples=20, batch_size=2, particle_batch_size=20, progress=False, diagnostics=False
    )
    got = m.log_likelihood(xs, ts, ls, seed=5, **options).per_example
    m.eval()
    for i in range(2):
        rows = slice(2 * i, 2 * i + 2)
        torch.manual_seed(batch_seed(5, i))
        lw = example_log_weights(m.model, m.guide, xs[rows], 20, 20, 1, None, (ts[rows], ls[rows]))
        expected = torch.logsumexp(lw, 0) - math.log(20)
        assert torch.equal(got[rows].double(), expected.cpu().double())
    # a context given as one tensor (lengths inferred) is the same evaluation
    one = m.guide_importance_log_likelihood(x, context=TOKENS, seed=5, **options).per_example
    two = m.log_likelihood(x, TOKENS, LENGTHS, seed=5, **options).per_example
    assert torch.equal(one, two)
    # an option the evaluator does not take is a TypeError naming it
    with pytest.raises(TypeError, match="num_chains"):
        m.log_likelihood(x, TOKENS, num_chains=3)


def test_paper_defaults_and_a_full_size_step():
    """Defaults: the MNIST-with-captions setting of Mansimov et al. (60x60, T = 32, 8x8 read
    and write, LSTMs 300, z 150, language LSTM 128 per direction, alignment 512); one
    Trace_ELBO evaluation at full size on two 12-token captions is finite."""
    m = AlignDRAW()
    assert (m.num_features, m.canvas_shape, m.steps, m.latent_dim) == (3600, (1, 60, 60), 32, 150)
    assert (m.encoder_size, m.decoder_size, m.prior) == (300, 300, "learned")
    assert m.reader.output_size == 2 * 8 * 8 and m.writer.grid_size == 8
    assert m.caption_encoder.hidden_size == 128 and m.alignment.hidden_size == 512
    assert m.decoder.input_size == 150 + 256 and m.vocab_size == 22
    captions = torch.stack(
        [
            m.vocabulary.encode("the digit 7 is on the left of the digit 2 ."),
            m.vocabulary.encode("the digit 0 is at the bottom right of the image ."),
        ]
    )
    assert math.isfinite(Trace_ELBO().loss(m.model, m.guide, _binary(2, 3600), None, captions))


def test_bad_input_is_a_clear_error():
    m = AlignDRAW(16, **TINY)
    x = _binary(4, 16)
    elbo = Trace_ELBO()
    with pytest.raises(ValueError, match="captions: got 3 captions for a batch of 4"):
        elbo.loss(m.model, m.guide, x, None, TOKENS[:3])
    with pytest.raises(ValueError, match="captions: got 3 captions for 4 images"):
        m.log_likelihood(x, TOKENS[:3], num_samples=2, progress=False)
    bad = TOKENS.clone()
    bad[1, 2] = V + 1
    with pytest.raises(ValueError, match=r"captions: token id 6 .* outside the vocabulary"):
        elbo.loss(m.model, m.guide, x, None, bad)
    # checked once per batch object, but a batch modified in place is checked again
    again = TOKENS.clone()
    assert math.isfinite(elbo.loss(m.model, m.guide, x, None, again))
    again[0, 0] = -3
    with pytest.raises(ValueError, match="captions: token id -3"):
        elbo.loss(m.model, m.guide, x, None, again)
    with pytest.raises(ValueError, match="captions: token id -1"):
        m.sample(torch.tensor([[-1, 0]]))
    with pytest.raises(ValueError, match="captions"):
        elbo.loss(m.model, m.guide, x)  # no captions at all
    with pytest.raises(ValueError, match="captions: caption 0 has the padding id"):
        m.sample(torch.tensor([[V, 1]]), lengths=torch.tensor([2]))
    with pytest.raises(ValueError, match="captions lengths"):
        m.sample(TOKENS, lengths=torch.tensor([1, 2, 3, 9]))
    nan = x.clone()
    nan[2, 3] = float("nan")
    with pytest.raises(ValueError, match="images contains nan"):
        m.log_likelihood(nan, TOKENS, num_samples=2, progress=False)
    with pytest.raises(ValueError, match="x contains NaN"):
        elbo.loss(m.model, m.guide, nan, None, TOKENS)
    with pytest.raises(ValueError, match="images: wrong size"):
        m.log_likelihood(x[:, :15], TOKENS, num_samples=2, progress=False)
    with pytest.raises(ValueError, match="binary"):
        m.log_likelihood(x * 0.5, TOKENS, num_samples=2, progress=False)
    with pytest.raises(ValueError, match="language_size"):
        AlignDRAW(16, **{**TINY, "language_size": 0})
    with pytest.raises(ValueError, match="captions: text needs a known vocabulary"):
        m.sample(["the digit 1"])
    with pytest.raises(ValueError, match="context: every part needs one row per example"):
        m.guide_importance_log_likelihood(x, context=TOKENS[:2], num_samples=2, progress=False)
