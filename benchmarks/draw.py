r"""DRAW and alignDRAW: test NLL on binarized MNIST, step time, caption fidelity.

Three tables, for a stated budget (on the CPU by default: ``--minutes`` of wall-clock
training for the attentive DRAW, 50; ``--no-attention-minutes`` for the other, 15;
``--align-minutes`` for alignDRAW, 30; the paper's settings and epochs with ``--paper``,
for a GPU):

**1. NLL on binarized MNIST.** DRAW [1] (:class:`pyrogen.models.DRAW`, built by the ``draw``
family) with attention (:math:`T` steps, :math:`2 \times 2` read, :math:`5 \times 5` write)
and without attention (whole image read, linear write), trained on the first 50,000 images
of the fixed binarization (``pyrogen.data.load("binarized_mnist")``) by the family's
learner (:class:`~pyrogen.train.SVILearner`, Pyro's ``Trace_ELBO``, Adam) until the
budget is spent. Each model is scored on the same seeded random subset of the 10,000 test
images by importance sampling with the guide as proposal
(:meth:`~pyrogen.models.DRAW.log_likelihood`, :math:`K` samples per image, stated; ESS and
PSIS :math:`\hat k` in the JSON) and by the variational bound
:math:`\mathcal L = -\mathcal L^x - \sum_t \mathrm{KL}_t` (one draw of :math:`z_{1:T}` per
image, the KL terms in closed form, :meth:`~pyrogen.models.DRAW.loss_terms`), beside
Gregor et al.'s Table 2: :math:`-\log p(x) \le 80.97` with attention (:math:`T = 64`) and
:math:`\le 87.40` without (the second is not confirmed by a search of the stored pages).

*KL warm-up.* Trained by the plain bound, DRAW can stay at the pixel marginal (about
206 nats for independent Bernoulli pixels at the training means, where the canvas starts):
the KL terms fall to zero and the canvas learns the mean image only. ``--kl-warmup N``
multiplies the KL part of the loss by :math:`\beta_s = \min(1, s / N)` at step
:math:`s = 1, 2, \dots` (Bowman et al. [3], Sønderby et al. [4]): a
:class:`KLWarmup` handler scales the log-densities of the sites ``z_1`` ... ``z_T`` in
model and guide alike, so that ``Trace_ELBO`` minimises
:math:`\mathcal L^x + \beta_s \sum_t \log q(z_t) / p(z_t)`; from step :math:`N` on it is
the bound. The learning curve in the JSON is the true bound (:math:`\beta = 1`) on a fixed
batch of validation images (the last 10,000 training images), with its two terms, so that
a collapse (KL near 0, bound near the marginal) shows.

*What the CPU runs showed* (T = 16, LSTMs of 256, batch 100, Adam 1e-3, one thread on a
shared 2-core machine). Without attention DRAW leaves the marginal at once (a bound of
156 nats after 50 steps). With attention, the first runs stayed at the marginal whatever
the KL schedule: the attention windows started at the edge of the canvas (the read grid on
the corner pixels, filters about one pixel wide; a write of ones changing the canvas by
0.03 per pixel), so neither the encoder nor :math:`z_t` received a signal. The windows now
start tiled over the canvas (:meth:`pyrogen.nn.GaussianAttention.initial_bias`), and a
small attentive DRAW (T = 8) on 1,000 images falls about 40 nats below the marginal in 300
steps. The NLL table has the exact marginal as its last row, and a model whose test bound
is within :data:`STUCK_NATS` of it is flagged.

**2. Speed.** One training step of the ``draw`` family's learner (``SVILearner`` with
``Trace_ELBO``, Pyro's validation as the user has it) against a hand-written PyTorch DRAW
step (:func:`hand_draw_step`) on copies of the same networks: the same LSTM cells,
attention read and write (:mod:`pyrogen.nn.attention`) and Gaussian heads, the loss
:math:`-\log p(x \mid c_T) + \sum_t \mathrm{KL}_t` (closed-form KL) written out, then
Adam; the same batch, interleaved rounds in a rotated order (``measure`` of
``benchmarks/helmholtz_speed.py``); the ratio is the median of per-round ratios (target
<= 1.15). From one initialisation and seed the hand-written loss equals the bound that
pyrogen computes on the same noise, and with ``kl="sampled"`` its update is the learner's
(``tests/test_draw_benchmark.py``).

**3. alignDRAW on MNIST with captions** [2]: the ``align_draw`` family trained through
:class:`pyrogen.runs.Run` (``RunConfig("align_draw", ..., dataset="mnist_captions")``,
dynamic binarization) for the budget; on a seeded subset of the test pairs the bound and
the importance-sampled :math:`\log p(x \mid y)` (:meth:`pyrogen.runs.Run.evaluate`); and
the caption fidelity (:func:`pyrogen.models.caption_fidelity.caption_fidelity`) of images
generated (pixel means :math:`\sigma(c_T)`) from test captions, half of them held-out
compositions (:meth:`pyrogen.runs.Run.conditional_contexts`), read by the caption
classifier (:func:`~pyrogen.models.caption_fidelity.caption_classifier`, whose scores on
the real test images are printed as its ceiling). The images are generated at each
temperature of ``align_temperatures`` (:meth:`pyrogen.models.AlignDRAW.sample`:
:math:`z_t \sim \mathcal N(\mu_t, \tau^2\sigma_t^2)` under the learned prior), by default
:math:`\tau = 0` (each :math:`z_t` at the prior's mean, a typical drawing of each caption;
the headline row) and :math:`\tau = 1` (samples of the model). Target in issue 11: at
least 0.70 of the held-out images match every attribute of their caption.

Modes: default (the CPU budget in minutes per model, :math:`T` and the widths of
:data:`MODES` ``"default"``, one torch thread), ``--paper`` (Gregor et al.'s and Mansimov
et al.'s settings, :math:`K = 5000` on all 10,000 test images; days on a CPU),
``--smoke`` (seconds; tiny networks, for CI). Results go to
``benchmarks/results/draw[_smoke|_paper].{json,md}`` (``--results`` elsewhere); the
estimates are :meth:`pyrogen.evaluate.LogLikelihood.to_dict` records. ``--figures DIR``
also writes pictures to look at beside the numbers: 64 samples of each DRAW
(``draw_attention_samples.png``, ``draw_no_attention_samples.png``) and, at each
temperature, 8 held-out and 8 seen images generated for the fidelity table with their
captions and the classifier's verdict (``align_draw_tau0.png``, ``align_draw_tau1.png``).

**References**

[1] DRAW: A Recurrent Neural Network For Image Generation. Karol Gregor, Ivo Danihelka,
    Alex Graves, Danilo Jimenez Rezende, Daan Wierstra. ICML 2015 (arXiv:1502.04623).

[2] Generating Images from Captions with Attention. Elman Mansimov, Emilio Parisotto,
    Jimmy Lei Ba, Ruslan Salakhutdinov. ICLR 2016 (arXiv:1511.02793).

[3] Generating Sentences from a Continuous Space. Samuel R. Bowman, Luke Vilnis, Oriol
    Vinyals, Andrew M. Dai, Rafal Jozefowicz, Samy Bengio. CoNLL 2016.

[4] Ladder Variational Autoencoders. Casper Kaae Sønderby, Tapani Raiko, Lars Maaløe,
    Søren Kaae Sønderby, Ole Winther. NeurIPS 2016.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import epoch_batches, machine, markdown_table  # noqa: E402
from helmholtz_speed import measure  # noqa: E402

from pyrogen.data import load  # noqa: E402
from pyrogen.families.base import DataInfo  # noqa: E402
from pyrogen.registry import get_family  # noqa: E402
from pyrogen.train import SVILearner  # noqa: E402

SPEED_TARGET = 1.15
FIDELITY_TARGET = 0.70
NLL_TARGET = 90.0
#: beyond this many steps :func:`extrapolate` gives no number (the curve is flat)
MAX_EXTRAPOLATED_STEPS = 1e9
#: a model whose test bound is within this many nats of the pixel marginal is called stuck
STUCK_NATS = 3.0


def is_stuck(nll_bound: float, marginal_nll: float) -> bool:
    """Whether a model's test bound (as an NLL) is no better than the pixel marginal's NLL
    by more than :data:`STUCK_NATS`."""
    return nll_bound > marginal_nll - STUCK_NATS


#: Gregor et al. (2015), Table 2: test -log p(x) <= (nats), binarized MNIST
PUBLISHED = {
    True: (80.97, "Gregor et al. 2015, Table 2 (T = 64); quoted by issue 11"),
    False: (87.40, "Gregor et al. 2015, Table 2; not confirmed by search"),
}

#: the settings of each mode. ``draw``: DRAW's hyper-parameters (the attention flag is
#: set per row); ``align``: alignDRAW's; ``minutes``: training budget of the attentive DRAW
#: and ``no_attention_minutes`` of the other (default ``minutes``; None: by
#: epochs); ``epochs`` / ``max_steps``: upper limits.
MODES = {
    "default": {
        "draw": {"steps": 16, "latent_dim": 100, "encoder_size": 256, "decoder_size": 256},
        "minutes": 50.0,
        "no_attention_minutes": 15.0,
        "epochs": 100,
        "max_steps": None,
        "batch_size": 100,
        "lr": 1e-3,
        "kl_warmup": 100,
        "train_examples": 50_000,
        "valid_images": 500,
        "curve_every": 50,
        "test_images": 100,
        "is_samples": 250,
        "is_batch": 10,
        "speed_rounds": 15,
        "speed_steps": 3,
        "align": {
            "steps": 8,
            "latent_dim": 50,
            "encoder_size": 128,
            "decoder_size": 192,
            "read_size": 4,
            "write_size": 6,
            "language_size": 64,
            "alignment_size": 128,
        },
        "align_minutes": 30.0,
        "align_test_images": 100,
        "align_is_samples": 100,
        "generated": 400,
        "align_temperatures": (0.0, 1.0),
        "classifier": {},
    },
    "paper": {
        "draw": {"steps": 64, "latent_dim": 100, "encoder_size": 256, "decoder_size": 256},
        "minutes": None,
        "epochs": 100,
        "max_steps": None,
        "batch_size": 100,
        "lr": 1e-3,
        "kl_warmup": 0,
        "train_examples": 50_000,
        "valid_images": 1000,
        "curve_every": 500,
        "test_images": 10_000,
        "is_samples": 5000,
        "is_batch": 10,
        "speed_rounds": 7,
        "speed_steps": 10,
        "align": {},  # the align_draw family's defaults are the paper's setting
        "align_minutes": None,
        "align_epochs": 100,
        "align_test_images": 10_000,
        "align_is_samples": 5000,
        "generated": 2000,
        "align_temperatures": (0.0, 1.0),
        "classifier": {},
    },
    "smoke": {
        "draw": {"steps": 2, "latent_dim": 3, "encoder_size": 8, "decoder_size": 8},
        "minutes": 0.05,
        "epochs": 1,
        "max_steps": 4,
        "batch_size": 20,
        "lr": 1e-3,
        "kl_warmup": 2,
        "train_examples": 200,
        "valid_images": 20,
        "curve_every": 2,
        "test_images": 4,
        "is_samples": 8,
        "is_batch": 4,
        "speed_rounds": 1,
        "speed_steps": 1,
        "align": {
            "steps": 2,
            "latent_dim": 3,
            "encoder_size": 8,
            "decoder_size": 8,
            "read_size": 2,
            "write_size": 3,
            "language_size": 4,
            "alignment_size": 6,
        },
        "align_minutes": 0.05,
        "align_max_steps": 3,
        "align_test_images": 4,
        "align_is_samples": 4,
        "generated": 8,
        "align_temperatures": (0.0, 1.0),
        "classifier": {"steps": 3, "train_size": 128, "test_size": 64},
    },
}


# ----------------------------------------------------------------------------- data


def binarized_mnist(train_examples: int, valid_images: int, test_images: int, seed: int = 0):
    """The fixed binarization of MNIST: ``(train, valid, test)``, each ``(N, 784)``:
    the first ``train_examples`` of the 50,000 training images, the first
    ``valid_images`` validation images (the learning curve's batch) and a seeded random
    subset of ``test_images`` of the 10,000 test images."""
    train = load("binarized_mnist", split="train").tensor().float().reshape(-1, 784)
    valid = load("binarized_mnist", split="valid").tensor().float().reshape(-1, 784)
    test = load("binarized_mnist", split="test").tensor().float().reshape(-1, 784)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(test.shape[0], generator=g)[:test_images]
    return train[:train_examples], valid[:valid_images], test[pick]


def marginal_nll(train: torch.Tensor, test: torch.Tensor, eps: float = 1e-3) -> dict:
    r"""The exact test NLL of independent Bernoulli pixels at the training means
    :math:`m` (clamped to ``[eps, 1 - eps]``, as DRAW's initial canvas):
    :math:`-\frac1N \sum_n \sum_d \big(x_{nd} \log m_d + (1 - x_{nd}) \log(1 - m_d)\big)`,
    with its standard error over the test images; where an untrained DRAW starts and a
    collapsed one stays (about 206 nats on binarized MNIST)."""
    m = train.double().mean(0).clamp(eps, 1 - eps)
    nll = F.binary_cross_entropy(m.expand(test.shape), test.double(), reduction="none").sum(-1)
    n = nll.numel()
    return {
        "nll": nll.mean().item(),
        "stderr": nll.std().item() / math.sqrt(n) if n > 1 else 0.0,
        "num_examples": n,
    }


# ----------------------------------------------------------------------------- KL warm-up


class KLWarmup(Messenger):
    r"""Scale the log-densities of the latent sites ``z_1`` ... ``z_T`` by :attr:`weight`
    (:math:`\beta`), in model and guide alike, so that an ELBO of the wrapped pair is
    :math:`\mathbb E_q[\log p(x \mid z)] - \beta\,\mathbb E_q[\log q(z) - \log p(z)]`
    (see module docs). The observed site is left as it is.

    :param float weight: the initial :math:`\beta`.
    :param str prefix: names of the scaled sites start with it.
    """

    def __init__(self, weight: float = 1.0, prefix: str = "z_") -> None:
        super().__init__()
        self.weight = float(weight)
        self.prefix = prefix

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["name"].startswith(self.prefix) and self.weight != 1:
            msg["scale"] = msg["scale"] * self.weight


def kl_weight(step: int, warmup: int) -> float:
    r""":math:`\beta_s = \min(1, s / N)` for step :math:`s \ge 1` and ``warmup`` :math:`N`
    (1 throughout when :math:`N = 0`)."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    return 1.0 if warmup == 0 else min(1.0, step / warmup)


# ----------------------------------------------------------------------------- models


def build_draw(cfg: dict, attention: bool, pixel_mean: torch.Tensor):
    """A DRAW model of the ``draw`` family and its config (the family's defaults, updated by
    ``cfg`` and ``attention``), its initial canvas at the log-odds of ``pixel_mean``."""
    family = get_family("draw")
    config = family.config(**{**cfg, "attention": attention})
    model = family.build(config, DataInfo(784, (28, 28), pixel_mean, "binarized_mnist"))
    return family, config, model


@torch.no_grad()
def draw_bound(model, x: torch.Tensor, batch_size: int = 500) -> dict:
    r"""The bound on ``x`` with one draw of :math:`z_{1:T}` per example and the KL terms in
    closed form: the mean ``bound`` :math:`-\mathcal L^x - \sum_t \mathrm{KL}_t`, its
    standard error over examples, and the means of ``reconstruction`` and ``kl``."""
    was = model.training
    model.eval()
    try:
        rec, kl = [], []
        for start in range(0, x.shape[0], batch_size):
            terms = model.loss_terms(x[start : start + batch_size])
            rec.append(terms["reconstruction"].double().cpu())
            kl.append(terms["kl"].sum(-1).double().cpu())
    finally:
        model.train(was)
    rec, kl = torch.cat(rec), torch.cat(kl)
    bound = -(rec + kl)
    n = bound.numel()
    return {
        "bound": bound.mean().item(),
        "bound_stderr": bound.std().item() / math.sqrt(n) if n > 1 else 0.0,
        "reconstruction": rec.mean().item(),
        "kl": kl.mean().item(),
        "num_examples": n,
    }


def train_draw(
    attention: bool,
    train: torch.Tensor,
    valid: torch.Tensor,
    cfg: dict,
    seed: int,
    *,
    minutes: float | None,
    kl_warmup: int = 0,
    device: str = "cpu",
    log=print,
):
    """Train one DRAW by the ``draw`` family's loss and Adam (module docs) for ``minutes``
    of wall-clock time (or ``cfg["epochs"]`` / ``cfg["max_steps"]``, whichever ends first),
    the KL part warmed up over ``kl_warmup`` steps. Returns ``(model, record)``; the record
    holds the learning curve (the bound on ``valid`` every ``cfg["curve_every"]`` steps)."""
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    family, config, model = build_draw(cfg["draw"], attention, train.mean(0))
    model.to(device)
    warm = KLWarmup(1.0)
    learner = SVILearner(
        model, family.loss(config), lr=cfg["lr"], model=warm(model.model), guide=warm(model.guide)
    )
    valid = valid.to(device)
    curve = []
    budget = None if minutes is None else minutes * 60.0
    start = time.perf_counter()
    train_seconds = 0.0
    steps, window = 0, []

    def point():
        b = draw_bound(model, valid)
        row = {"step": steps, "seconds": train_seconds, **b}
        row["train_loss"] = statistics.fmean(window) if window else None
        curve.append(row)
        log(
            f"  step {steps} ({train_seconds:.0f} s): valid bound {b['bound']:.2f} "
            f"(recon {b['reconstruction']:.2f}, KL {b['kl']:.2f}), beta "
            f"{warm.weight:.2f}",
        )

    point()
    done = False
    for xb in epoch_batches(train, cfg["batch_size"], cfg["epochs"], seed):
        t0 = time.perf_counter()
        warm.weight = kl_weight(steps + 1, kl_warmup)
        out = learner.step(xb.to(device))
        steps += 1
        window.append(float(out["loss"]))
        window = window[-cfg["curve_every"] :]
        train_seconds += time.perf_counter() - t0
        if not math.isfinite(window[-1]):
            raise FloatingPointError(f"DRAW training diverged at step {steps}")
        done = (budget is not None and train_seconds >= budget) or (
            cfg["max_steps"] is not None and steps >= cfg["max_steps"]
        )
        if steps % cfg["curve_every"] == 0 or done:
            point()
        if done:
            break
    if not curve or curve[-1]["step"] != steps:
        point()
    model.eval()
    record = {
        "attention": attention,
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "steps": steps,
        "epochs": steps * cfg["batch_size"] / train.shape[0],
        "batch_size": cfg["batch_size"],
        "lr": cfg["lr"],
        "kl_warmup": kl_warmup,
        "budget_minutes": minutes,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - start,
        "curve": curve,
    }
    return model, record


def score_draw(model, test: torch.Tensor, cfg: dict, seed: int) -> dict:
    """Importance-sampled log-likelihood (:meth:`DRAW.log_likelihood`, ``cfg["is_samples"]``
    per image) and the bound on ``test``; seconds of each."""
    start = time.perf_counter()
    ll = model.log_likelihood(
        test, num_samples=cfg["is_samples"], batch_size=cfg["is_batch"], progress=False, seed=seed
    )
    is_seconds = time.perf_counter() - start
    start = time.perf_counter()
    torch.manual_seed(seed)
    bound = draw_bound(model, test.to(next(model.parameters()).device))
    return {
        "importance": ll.to_dict(),
        "importance_seconds": is_seconds,
        "bound": bound,
        "bound_seconds": time.perf_counter() - start,
    }


def extrapolate(curve: list[dict], target: float = NLL_TARGET) -> dict | None:
    r"""A rough guess of the training steps to reach ``-bound <= target``: a least-squares
    line :math:`-\mathcal L \approx a + b \log s` through the second half of the learning
    curve (steps :math:`s \ge 1`), solved for ``target``; ``None`` when there are fewer
    than three points, the curve is not falling, or the line needs more than
    :data:`MAX_EXTRAPOLATED_STEPS` steps (a flat curve, e.g. one stuck at the pixel
    marginal). Returns ``steps`` and ``seconds`` (at the
    curve's mean seconds per step) and the fit ``a``, ``b``."""
    points = [(p["step"], -p["bound"], p["seconds"]) for p in curve if p["step"] >= 1]
    if len(points) < 3:
        return None
    if -points[-1][1] >= -target:  # already there
        return {"steps": points[-1][0], "seconds": points[-1][2], "a": None, "b": None}
    half = points[len(points) // 2 :] if len(points) >= 6 else points
    xs = [math.log(s) for s, _, _ in half]
    ys = [y for _, y, _ in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    if b >= 0 or (target - a) / b > math.log(MAX_EXTRAPOLATED_STEPS):
        return None
    steps = math.exp((target - a) / b)
    per_step = points[-1][2] / points[-1][0]
    return {"steps": steps, "seconds": steps * per_step, "a": a, "b": b}


# ----------------------------------------------------------------------------- speed


def hand_draw_step(net, x: torch.Tensor, lr: float = 1e-3, kl: str = "analytic"):
    r"""One DRAW training step written directly in PyTorch on the networks of ``net`` (a
    :class:`~pyrogen.models.DRAW` with the standard prior and a Bernoulli output, or a
    copy): the encoder reads :math:`x` and :math:`x - \sigma(c_{t-1})`, draws
    :math:`z_t = \mu_t + \sigma_t \epsilon_t` with :math:`\epsilon_t` from
    ``torch.randn_like``, the decoder writes; the loss, summed over the batch, is
    :math:`-\log p(x \mid c_T) + \sum_t \mathrm{KL}_t` with

    * ``kl="analytic"``: :math:`\mathrm{KL}_t = \frac12 \sum (\mu_t^2 + \sigma_t^2 -
      \log\sigma_t^2 - 1)`, the closed form (as in [1]);
    * ``kl="sampled"``: :math:`\log q(z_t) - \log p(z_t)` at the drawn :math:`z_t`, the
      single-sample estimate ``Trace_ELBO`` uses;

    then Adam (``lr``). Returns a function that takes the step and returns the loss."""
    if kl not in ("analytic", "sampled"):
        raise ValueError(f"kl must be 'analytic' or 'sampled', got {kl!r}")
    if net.prior != "standard" or net.likelihood != "bernoulli" or net.condition_size:
        raise ValueError("net: hand_draw_step writes DRAW with the standard prior and Bernoulli x")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    n = x.shape[0]
    image = x.reshape(n, *net.canvas_shape)
    log_2pi = math.log(2 * math.pi)

    def step() -> torch.Tensor:
        h_dec = c_dec = x.new_zeros(n, net.decoder_size)
        h_enc = c_enc = x.new_zeros(n, net.encoder_size)
        canvas = net.canvas_bias.expand(n, *net.canvas_shape)
        kl_sum = x.new_zeros(n)
        for _ in range(net.steps):
            r = net.reader(image, image - torch.sigmoid(canvas), h_dec)
            h_enc, c_enc = net.encoder(torch.cat([r, h_dec], -1), (h_enc, c_enc))
            mu, sigma = net.posterior(h_enc)
            eps = torch.randn_like(mu)
            z = mu + sigma * eps
            if kl == "analytic":
                kl_sum = kl_sum + 0.5 * (mu**2 + sigma**2 - 2 * torch.log(sigma) - 1).sum(-1)
            else:
                log_q = (-0.5 * eps**2 - torch.log(sigma) - 0.5 * log_2pi).sum(-1)
                log_p = (-0.5 * z**2 - 0.5 * log_2pi).sum(-1)
                kl_sum = kl_sum + log_q - log_p
            h_dec, c_dec = net.decoder(z, (h_dec, c_dec))
            canvas = canvas + net.writer(h_dec)
        rec = F.binary_cross_entropy_with_logits(canvas.reshape(n, -1), x, reduction="none")
        loss = (rec.sum(-1) + kl_sum).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def speed_table(x: torch.Tensor, cfg: dict, seed: int, device: str = "cpu") -> list[dict]:
    """Seconds per step of the ``draw`` family's learner and of :func:`hand_draw_step` on
    copies of one initialisation, for DRAW with and without attention (module docs)."""
    rows = []
    x = x.to(device)
    for attention in (True, False):
        torch.manual_seed(seed)
        family, config, model = build_draw(cfg["draw"], attention, x.mean(0).cpu())
        model.to(device)
        hand_net = copy.deepcopy(model)
        learner = family.learner(model, config, cfg["lr"])
        times = measure(
            {
                "pyrogen": lambda learner=learner: learner.step(x),
                "hand": hand_draw_step(hand_net, x, cfg["lr"]),
            },
            cfg["speed_steps"],
            cfg["speed_rounds"],
            warmup=min(3, cfg["speed_steps"]),
        )
        ratio = statistics.median(a / b for a, b in zip(times["pyrogen"], times["hand"]))
        rows.append(
            {
                "attention": attention,
                "steps": config.steps,
                "batch_size": x.shape[0],
                "ms_pyrogen": statistics.median(times["pyrogen"]) * 1e3,
                "ms_hand": statistics.median(times["hand"]) * 1e3,
                "ratio": ratio,
                "target": SPEED_TARGET,
                "met": ratio <= SPEED_TARGET,
                "rounds": cfg["speed_rounds"],
                "steps_per_round": cfg["speed_steps"],
                "validation": is_validation_enabled(),
            }
        )
    return rows


# ----------------------------------------------------------------------------- alignDRAW


class _BudgetSpent(Exception):
    """Raised by the training callback when the wall-clock budget is spent."""


def draw_samples_figure(model, path, seed: int, num: int = 64) -> str:
    r"""Write ``num`` samples of ``model`` (pixel means :math:`\sigma(c_T)`, 28 x 28) as a
    grid to ``path``; returns the path."""
    from pyrogen.plotting import save_image_grid

    torch.manual_seed(seed)
    with torch.no_grad():
        images = model.sample(num, mean=True).float().cpu()
    return save_image_grid(images, path, (28, 28), nrow=8, scale=0.5)


def fidelity_verdicts(fidelity) -> list[str]:
    """Per image of a :class:`~pyrogen.models.caption_fidelity.CaptionFidelity`: ``"match"``
    when the classifier read every attribute as the caption says, else ``"wrong: "`` and
    the attributes it read otherwise."""
    n = fidelity.correct["match"].numel()
    out = []
    for i in range(n):
        wrong = [a for a in fidelity.attributes if not bool(fidelity.correct[a][i])]
        out.append("match" if not wrong else "wrong: " + ", ".join(wrong))
    return out


def fidelity_figure(images, test, picked, fidelity, path, title: str, per_group: int = 8) -> str:
    """Write the first ``per_group`` held-out and seen generated images (two rows each)
    with their captions and the classifier's verdict (the attributes it read wrongly,
    else "match"; :mod:`pyrogen.models.caption_fidelity` defines them: ``first`` is the
    left or top digit in the image) to ``path``; returns the path."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from pyrogen.plotting import image_grid

    shape = tuple(test.image_shape)
    colour = len(shape) == 3 and shape[0] == 3
    flags = fidelity.flags
    verdicts = fidelity_verdicts(fidelity)
    rows = []
    for held in (True, False):
        where = torch.nonzero(flags == held).squeeze(1)[:per_group].tolist()
        rows.append((held, where))
    cols = max(1, (per_group + 1) // 2)
    lines = [max(1, math.ceil(len(where) / cols)) for _, where in rows]
    fig, axes = plt.subplots(
        sum(lines), cols, figsize=(2.0 * cols, 2.5 * sum(lines) + 0.4), squeeze=False
    )
    for block, (held, where) in enumerate(rows):
        first = sum(lines[:block])
        for k in range(lines[block] * cols):
            ax = axes[first + k // cols, k % cols]
            ax.set_xticks([]), ax.set_yticks([])
            if k >= len(where):
                ax.axis("off")
                continue
            i = where[k]
            picture = image_grid(images[i], shape if colour else shape[-2:], pad=0)
            ax.imshow(picture if colour else 1 - picture, cmap="gray", vmin=0, vmax=1)
            verdict = verdicts[i]
            caption = test.describe(int(picked[i])).replace(" .", "")
            ax.set_title(
                "\n".join(textwrap.wrap(caption, 24) + textwrap.wrap(f"[{verdict}]", 26)),
                fontsize=7,
                color="black" if verdict == "match" else "firebrick",
            )
        axes[first, 0].set_ylabel("held-out" if held else "seen", fontsize=9)
    fig.suptitle(
        title + "\n(the classifier's attributes: first = the left or top digit in the image, "
        "second = the right or bottom one)",
        fontsize=9,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def align_draw_section(
    cfg: dict, seed: int, device: str, mode: str, log=print, figures: str | None = None
) -> dict:
    """Train alignDRAW through :class:`pyrogen.runs.Run` for the budget, score it on test
    pairs and measure the caption fidelity of images generated from test captions (with
    ``figures``, a folder: a picture of the generated images at each temperature)."""
    from pyrogen.models.caption_fidelity import caption_classifier, caption_fidelity
    from pyrogen.runs import Run, RunConfig

    minutes = cfg["align_minutes"]
    run_config = RunConfig(
        "align_draw",
        dict(cfg["align"]),
        dataset="mnist_captions",
        epochs=cfg.get("align_epochs", 100),
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        seed=seed,
        device=device,
        validate=False,
        max_steps=cfg.get("align_max_steps"),
    )
    run = Run(run_config)
    start = time.perf_counter()
    history = []

    def callback(row):
        history.append({**row, "seconds": time.perf_counter() - start})
        if minutes is not None and time.perf_counter() - start >= minutes * 60:
            raise _BudgetSpent

    with pyro.validation_enabled(is_validation_enabled()):
        try:
            run.train(progress=False, callback=callback, log_every=10)
        except _BudgetSpent:
            pass
    train_seconds = time.perf_counter() - start
    model = run.model.eval()
    steps = history[-1]["step"] if history else 0
    log(f"alignDRAW: {steps} steps in {train_seconds:.0f} s")

    start = time.perf_counter()
    ll = run.evaluate(
        limit=cfg["align_test_images"],
        seed=seed,
        num_samples=cfg["align_is_samples"],
        progress=False,
        batch_size=cfg["is_batch"],
    )
    eval_seconds = time.perf_counter() - start

    test, picked = run.conditional_contexts(cfg["generated"], seed)
    ref = next(model.parameters())
    captions = test.context[picked]
    held = test.held_out[picked]
    options = dict(cfg["classifier"])
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "smoke":  # a throwaway classifier, not cached beside the real one
            options["cache"] = tmp
        classifier = caption_classifier(seed=0, device=device, **options)
    by_temperature, pictures = {}, []
    for temperature in cfg["align_temperatures"]:
        torch.manual_seed(seed)
        with torch.no_grad():
            images = (
                model.sample(captions.to(ref.device), mean=True, temperature=temperature)
                .float()
                .cpu()
            )
        by_temperature[temperature] = caption_fidelity(images, captions, classifier, held_out=held)
        if figures:
            pictures.append(
                fidelity_figure(
                    images,
                    test,
                    picked,
                    by_temperature[temperature],
                    Path(figures) / f"align_draw_tau{temperature:g}.png",
                    f"alignDRAW from test captions, temperature {temperature:g} "
                    f"({steps} training steps)",
                )
            )
    fidelity = by_temperature[cfg["align_temperatures"][0]]
    real = {g: _group_dict(v) for g, v in classifier.test_fidelity.items()}
    return {
        "config": {**run.model_config.__dict__},
        "run": run_config.to_dict(),
        "steps": steps,
        "train_seconds": train_seconds,
        "history": history,
        "importance": ll.to_dict(),
        "eval_seconds": eval_seconds,
        "temperature": cfg["align_temperatures"][0],
        "fidelity": {g: _group_dict(v) for g, v in fidelity.groups().items()},
        "fidelity_markdown": fidelity.markdown(),
        "fidelity_by_temperature": [
            {
                "temperature": t,
                "groups": {g: _group_dict(v) for g, v in f.groups().items()},
                "markdown": f.markdown(),
                "held_out_met": _met(f),
            }
            for t, f in by_temperature.items()
        ],
        "classifier_real_test": real,
        "classifier_settings": {k: v for k, v in options.items() if k != "cache"},
        "generated": int(len(picked)),
        "held_out_target": FIDELITY_TARGET,
        "held_out_met": _met(fidelity),
        "figures": pictures,
    }


def _met(fidelity) -> bool | None:
    """Whether the held-out images meet the fidelity target (None without held-out images)."""
    if fidelity.held_out is None or not fidelity.held_out.num_images:
        return None
    return bool(fidelity.held_out.match >= FIDELITY_TARGET)


def _group_dict(group) -> dict:
    return {
        "num_images": group.num_images,
        "accuracy": dict(group.accuracy),
        "match": group.match,
        "match_stderr": group.match_stderr,
    }


# ----------------------------------------------------------------------------- tables


def nll_markdown(rows: list[dict], marginal: dict | None = None) -> str:
    header = [
        "model",
        "T",
        "steps (epochs)",
        "train min",
        "IS -log p(x) ± SE (K)",
        "bound -L ± SE",
        "ESS median",
        "Gregor et al. (<=)",
    ]
    out = []
    for r in rows:
        imp, b, tr = r["importance"], r["bound"], r["train"]
        pub, note = PUBLISHED[r["attention"]]
        out.append(
            [
                "DRAW, attention" if r["attention"] else "DRAW, no attention",
                tr["config"]["steps"],
                f"{tr['steps']} ({tr['epochs']:.2f})",
                f"{tr['train_seconds'] / 60:.1f}",
                f"{-imp['log_likelihood']:.2f} ± {imp['stderr']:.2f} ({imp['num_samples']})",
                f"{-b['bound']:.2f} ± {b['bound_stderr']:.2f}",
                _fmt(imp.get("ess_median")),
                f"{pub:.2f}" + ("" if "confirmed" not in note else " (not confirmed by search)"),
            ]
        )
    if marginal is not None:
        out.append(
            [
                "pixel marginal (independent Bernoulli at the training means, exact)",
                "-",
                "-",
                "-",
                f"{marginal['nll']:.2f} ± {marginal['stderr']:.2f} (exact)",
                "-",
                "-",
                "-",
            ]
        )
    return markdown_table(header, out)


def _fmt(v, digits=1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def speed_markdown(rows: list[dict]) -> str:
    return markdown_table(
        ["DRAW", "T", "batch", "pyrogen SVILearner (ms)", "hand-written (ms)", "ratio", "target"],
        [
            [
                "attention" if r["attention"] else "no attention",
                r["steps"],
                r["batch_size"],
                r["ms_pyrogen"],
                r["ms_hand"],
                r["ratio"],
                f"<= {r['target']} ({'met' if r['met'] else 'NOT met'})",
            ]
            for r in rows
        ],
    )


def align_markdown(a: dict) -> str:
    imp = a["importance"]
    c = a["config"]
    lines = [
        f"alignDRAW (T = {c['steps']}, {c['read_size']}x{c['read_size']} read, "
        f"{c['write_size']}x{c['write_size']} write, LSTMs {c['encoder_size']}/"
        f"{c['decoder_size']}, z {c['latent_dim']}, language {c['language_size']}, alignment "
        f"{c['alignment_size']}) trained {a['steps']} steps ({a['train_seconds'] / 60:.1f} min) "
        f"on mnist_captions (dynamic binarization) through pyrogen.runs.Run; "
        f"{imp['num_examples']} seeded random test pairs:",
        "",
        markdown_table(
            ["estimate", "-log p(x \\| caption) ± SE", "K", "ESS median"],
            [
                [
                    "importance sampling",
                    f"{-imp['log_likelihood']:.2f} ± {imp['stderr']:.2f}",
                    imp["num_samples"],
                    _fmt(imp.get("ess_median")),
                ],
                [
                    "bound (closed-form KL)",
                    f"{-imp['test_bound']:.2f} ± {imp['test_bound_stderr']:.2f}",
                    1,
                    "-",
                ],
            ],
        ),
        "",
        f"Caption fidelity of {a['generated']} images generated (pixel means) from test "
        "captions (half held-out compositions), read by the caption classifier. The latent "
        "z_t are drawn from N(mu_t, (tau sigma_t)^2), the learned prior's mean and scale "
        "at temperature tau: tau = 1 samples the model, tau = 0 follows the prior's means "
        "(a typical drawing of each caption).",
        "",
    ]
    for f in a["fidelity_by_temperature"]:
        lines += [f"Temperature tau = {f['temperature']:g}:", "", f["markdown"], ""]
    lines += [
        "The classifier on the real test images with their own captions (its ceiling):",
        "",
        markdown_table(
            ["images", "match"],
            [
                [f"{g} ({v['num_images']})", f"{v['match']:.3f} ± {v['match_stderr']:.3f}"]
                for g, v in a["classifier_real_test"].items()
            ],
        ),
        "",
    ]
    for f in a["fidelity_by_temperature"]:
        met = f["held_out_met"]
        lines.append(
            f"Target (issue 11): held-out match >= {FIDELITY_TARGET} at tau = "
            f"{f['temperature']:g}: " + ("n/a" if met is None else "met" if met else "NOT met")
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


SECTIONS = ("nll", "speed", "align")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--smoke", action="store_true", help="seconds: tiny sizes, for CI")
    group.add_argument("--paper", action="store_true", help="the papers' settings (a GPU)")
    parser.add_argument(
        "--minutes", type=float, default=None, help="training minutes per DRAW (both)"
    )
    parser.add_argument(
        "--no-attention-minutes",
        type=float,
        default=None,
        help="training minutes of the DRAW without attention (after --minutes)",
    )
    parser.add_argument("--align-minutes", type=float, default=None, help="alignDRAW minutes")
    parser.add_argument("--kl-warmup", type=int, default=None, help="KL warm-up steps (0: off)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}"
    )
    parser.add_argument(
        "--models",
        default="attention,no_attention",
        help="the DRAWs of the NLL table, comma-separated, of attention, no_attention",
    )
    parser.add_argument("--results", default=None, help="results folder (default results/)")
    parser.add_argument("--name", default=None, help="results file name")
    parser.add_argument(
        "--figures",
        default=None,
        help="folder for PNGs: each DRAW's samples, alignDRAW's images at each temperature",
    )
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(f"--sections: unknown {bad}; expected some of {SECTIONS}")
    models = [m for m in args.models.split(",") if m]
    if not models or any(m not in ("attention", "no_attention") for m in models):
        raise ValueError(f"--models: expected some of attention, no_attention, got {args.models!r}")
    args.attention = [m == "attention" for m in models]
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, sections)
    finally:
        torch.set_num_threads(threads)


def _minutes(cfg: dict, attention: bool) -> float | None:
    """The training budget of the DRAW with (``minutes``) or without attention
    (``no_attention_minutes``, default the same)."""
    if attention:
        return cfg["minutes"]
    return cfg.get("no_attention_minutes", cfg["minutes"])


def _run(args, sections) -> int:
    mode = "smoke" if args.smoke else "paper" if args.paper else "default"
    cfg = dict(MODES[mode])
    if args.minutes is not None:
        cfg["minutes"] = cfg["no_attention_minutes"] = args.minutes
    if args.no_attention_minutes is not None:
        cfg["no_attention_minutes"] = args.no_attention_minutes
    if args.align_minutes is not None:
        cfg["align_minutes"] = args.align_minutes
    if args.kl_warmup is not None:
        cfg["kl_warmup"] = args.kl_warmup
    wall = time.perf_counter()
    m = machine()
    budget = (
        f"{mode} mode, {args.threads} torch thread(s), device {args.device} ({m['cpu']}); "
        + (
            (
                f"{cfg['minutes']} min of training per DRAW"
                if _minutes(cfg, False) == cfg["minutes"]
                else f"{cfg['minutes']} min of training for DRAW with attention, "
                f"{_minutes(cfg, False)} without"
            )
            if cfg["minutes"] is not None
            else f"{cfg['epochs']} epochs per DRAW"
        )
        + f" (batch {cfg['batch_size']}, Adam {cfg['lr']}, KL warm-up {cfg['kl_warmup']} steps)"
    )
    print(budget, flush=True)
    text_parts = [budget]
    record: dict = {
        "machine": m,
        "mode": mode,
        "settings": {**cfg, "seed": args.seed, "threads": args.threads, "device": args.device},
        "budget": budget,
        "published": {
            "attention": {"nll_at_most": PUBLISHED[True][0], "source": PUBLISHED[True][1]},
            "no_attention": {"nll_at_most": PUBLISHED[False][0], "source": PUBLISHED[False][1]},
        },
    }
    ok = True
    train = valid = test = None
    if "nll" in sections or "speed" in sections:
        train, valid, test = binarized_mnist(
            cfg["train_examples"], cfg["valid_images"], cfg["test_images"], args.seed
        )
    if "nll" in sections:
        rows = []
        for attention in args.attention:
            print(f"DRAW {'with' if attention else 'without'} attention:", flush=True)
            model, tr = train_draw(
                attention,
                train,
                valid,
                cfg,
                args.seed,
                minutes=_minutes(cfg, attention),
                kl_warmup=cfg["kl_warmup"],
                device=args.device,
                log=lambda s: print(s, flush=True),
            )
            scores = score_draw(model, test.to(args.device), cfg, args.seed)
            row = {"attention": attention, "train": tr, **scores}
            if args.figures:
                tag = "attention" if attention else "no_attention"
                row["figure"] = draw_samples_figure(
                    model, Path(args.figures) / f"draw_{tag}_samples.png", args.seed
                )
            row["extrapolation_to_90"] = extrapolate(tr["curve"])
            rows.append(row)
            ok &= math.isfinite(scores["importance"]["log_likelihood"])
        record["nll"] = rows
        record["marginal"] = marginal_nll(train, test)
        first = rows[0]["importance"]
        nll_text = (
            f"DRAW on binarized MNIST (fixed binarization, 50,000 training images); test "
            f"-log p(x) in nats on {first['num_examples']} seeded random test images: "
            f"importance sampling with the guide (K = {first['num_samples']}) and the bound "
            f"(one draw, closed-form KL). Read {cfg['draw'].get('read_size', 2)}x"
            f"{cfg['draw'].get('read_size', 2)}, write {cfg['draw'].get('write_size', 5)}x"
            f"{cfg['draw'].get('write_size', 5)}; LSTMs {cfg['draw']['encoder_size']}, z "
            f"{cfg['draw']['latent_dim']}.\n\n" + nll_markdown(rows, record["marginal"])
        )
        for r in rows:
            ex = r["extrapolation_to_90"]
            name = "attention" if r["attention"] else "no attention"
            if ex is not None:
                nll_text += (
                    f"\n\nDRAW, {name}: a line in log(steps) through the second half of the "
                    f"learning curve reaches 90 nats (bound) after about {ex['steps']:.3g} steps"
                    f", {ex['seconds'] / 3600:.3g} hours at this run's speed (rough)."
                )
            else:
                nll_text += (
                    f"\n\nDRAW, {name}: the learning curve is flat or rising; no extrapolation."
                )
            if is_stuck(-r["bound"]["bound"], record["marginal"]["nll"]):
                nll_text += (
                    f" Its bound is within {STUCK_NATS} nats of the pixel marginal: stuck there "
                    f"(test KL {r['bound']['kl']:.2f} nats)."
                )
        print("\n" + nll_text + "\n", flush=True)
        text_parts.append(nll_text)
    if "speed" in sections:
        speed = speed_table(train[: cfg["batch_size"]], cfg, args.seed, args.device)
        record["speed"] = speed
        speed_text = (
            "One DRAW training step: the draw family's learner (SVILearner, Trace_ELBO, Pyro "
            f"validation {'on' if speed[0]['validation'] else 'off'}) against a hand-written "
            "PyTorch step on copies of the same networks (closed-form KL, Adam), same batch; "
            f"median of {cfg['speed_rounds']} interleaved rounds of {cfg['speed_steps']} "
            "steps, ratio the median of per-round ratios.\n\n" + speed_markdown(speed)
        )
        print("\n" + speed_text + "\n", flush=True)
        text_parts.append(speed_text)
    if "align" in sections:
        align = align_draw_section(cfg, args.seed, args.device, mode, figures=args.figures)
        record["align_draw"] = align
        ok &= math.isfinite(align["importance"]["log_likelihood"])
        align_text = align_markdown(align)
        print("\n" + align_text + "\n", flush=True)
        text_parts.append(align_text)
    total = time.perf_counter() - wall
    record["wall_seconds"] = total
    text_parts.append(f"Total wall time: {total / 60:.1f} min.")
    print(f"Total wall time: {total / 60:.1f} min.", flush=True)
    if args.results:
        _common.RESULTS = Path(args.results)
    name = args.name or ("draw" if mode == "default" else f"draw_{mode}")
    js, md = _common.write_results(name, record, "\n\n".join(text_parts))
    print(f"\nwrote {js} and {md}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
