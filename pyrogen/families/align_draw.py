r"""Registry entry of the alignDRAW family (Mansimov et al. 2016; :mod:`pyrogen.models.align_draw`).

alignDRAW is conditional: an example is an image :math:`x` and a caption :math:`y`, and the
model is :math:`p(x \mid y)`. It trains on a conditional data set (``mnist_captions``, or
``mnist_captions_colour``), whose batches reach the learner as
:class:`~pyrogen.runs.ConditionalBatch` ``[images, token ids]``; the learner hands the
captions to model and guide as their ``context`` and maximises the bound

.. math::

    \log p(x \mid y) \ge \mathbb E_{q(z_{1:T} \mid x, y)}\Big[\log p(x \mid y, z_{1:T})
        - \sum_{t=1}^T \log \frac{q(z_t \mid x, y, z_{<t})}{p(z_t \mid y, z_{<t})}\Big]

(``objective="elbo"``, as in the paper, or the IWAE bound with ``num_particles``).
Evaluation is the protocol's: the importance-sampling estimate of
:math:`\log p(x \mid y)` on test pairs (the guide as proposal, :math:`K = 5000`), and beside
it the test bound with the KL terms in closed form (``diagnostics["test_bound"]`` of the
result, with its standard error over examples).

Defaults are the MNIST-with-captions setting of [1]: :math:`T = 32` steps, :math:`8 \times 8`
read and write attention, encoder and decoder LSTMs of 300 units, :math:`z_t` of 150, a
language LSTM of 128 units per direction, an alignment layer of 512 units.

**References**

[1] Generating Images from Captions with Attention. Elman Mansimov, Emilio Parisotto,
    Jimmy Lei Ba, Ruslan Salakhutdinov. ICLR 2016 (arXiv:1511.02793).

[2] DRAW: A Recurrent Neural Network For Image Generation. Karol Gregor, Ivo Danihelka,
    Alex Graves, Danilo Jimenez Rezende, Daan Wierstra. ICML 2015 (arXiv:1502.04623).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pyrogen.families.base import DataInfo, Family, choice, option, register
from pyrogen.families.draw import draw_network_options
from pyrogen.families.vae import particle_loss

#: the conditional data sets the family trains on by default, and their vocabulary sizes
CAPTION_VOCABULARIES = {"mnist_captions": 22, "mnist_captions_colour": 26}


@dataclass
class AlignDRAWConfig:
    """Hyper-parameters of alignDRAW; the defaults are the paper's MNIST-with-captions
    setting (T = 32, 8x8 read and write, LSTMs of 300, z of 150, language LSTM 128,
    alignment 512)."""

    steps: int = option(32, "glimpses T (time steps writing to the canvas)")
    latent_dim: int = option(150, "width of each latent z_t")
    encoder_size: int = option(300, "encoder (inference) LSTM units")
    decoder_size: int = option(300, "decoder (generative) LSTM units")
    attention: bool = option(True, "Gaussian read/write attention (off: whole image, linear write)")
    read_size: int = option(8, "N of the N x N read grid")
    write_size: int = option(8, "N of the N x N write patch")
    language_size: int = option(128, "units per direction of the bidirectional caption LSTM")
    alignment_size: int = option(512, "units of the alignment layer over the words")
    vocab_size: int = option(
        0, "words of the caption vocabulary (0: the data set's, e.g. 22 for mnist_captions)"
    )
    objective: str = choice(
        "elbo", ("elbo", "iwae"), "training objective: the ELBO (as in the paper) or IWAE"
    )
    num_particles: int = option(1, "importance samples (particles) per example in the objective")

    def validate(self) -> None:
        for name in (
            "steps",
            "latent_dim",
            "encoder_size",
            "decoder_size",
            "read_size",
            "write_size",
            "language_size",
            "alignment_size",
            "num_particles",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.vocab_size, bool) or self.vocab_size < 0:
            raise ValueError(f"vocab_size must be >= 0 (0: the data set's), got {self.vocab_size}")
        if self.objective not in ("elbo", "iwae"):
            raise ValueError(f"objective must be 'elbo' or 'iwae', got {self.objective!r}")


def _vocab_size(config: AlignDRAWConfig, info: DataInfo) -> int:
    """The caption vocabulary: the config's, else the data's (``info.context_size``, or the
    known size of a caption data set by name)."""
    if config.vocab_size:
        return int(config.vocab_size)
    size = getattr(info, "context_size", None) or CAPTION_VOCABULARIES.get(info.dataset)
    if size is None:
        raise ValueError(
            f"vocab_size: the data ({info.dataset or 'unnamed'}) is not a caption data set "
            f"({', '.join(CAPTION_VOCABULARIES)}) and vocab_size is 0; train on one of those "
            "or set vocab_size"
        )
    return int(size)


def _rows(context: Any, rows: slice, device: torch.device) -> Any:
    """Rows of a context (a tensor, or a pair (token ids, lengths)) on ``device``."""
    if isinstance(context, tuple | list):
        return type(context)(part[rows].to(device) for part in context)
    return context[rows].to(device)


class ConditionalLearner:
    """Adapter of a learner on ``(x, context)`` model/guide calls to batches
    ``[images, context]`` (:class:`~pyrogen.runs.ConditionalBatch`): model and guide are
    called as ``model(images, None, context)``."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module

    def model(self, batch):
        return self.module.model(batch[0], None, batch[1])

    def guide(self, batch):
        return self.module.guide(batch[0], None, batch[1])


@register
class AlignDRAWFamily(Family):
    name = "align_draw"
    description = (
        "alignDRAW: DRAW conditioned on a caption through an alignment over its words, "
        "p(x | caption) (Bernoulli; trains on mnist_captions)"
    )
    config_cls = AlignDRAWConfig
    sample_option = "num_samples"
    default_num_samples = 5000
    #: an example is an image and a context (caption token ids): train on a conditional
    #: data set (:class:`~pyrogen.runs.ConditionalDataset`)
    conditional = True
    #: the data set of the family's smoke runs and of the contract tests
    default_dataset = "mnist_captions"
    #: the keyword under which the model's ``log_likelihood`` takes the contexts
    context_option = "captions"
    smoke_config = {
        "steps": 2,
        "latent_dim": 3,
        "encoder_size": 8,
        "decoder_size": 8,
        "read_size": 2,
        "write_size": 3,
        "language_size": 4,
        "alignment_size": 6,
    }

    def build(self, config: AlignDRAWConfig, info: DataInfo) -> torch.nn.Module:
        from pyrogen.models.align_draw import AlignDRAW

        return AlignDRAW(
            info.num_features,
            vocab_size=_vocab_size(config, info),
            language_size=config.language_size,
            alignment_size=config.alignment_size,
            **draw_network_options(config, info),
        )

    def loss(self, config: AlignDRAWConfig):
        return particle_loss(config.objective, config.num_particles)

    def learner(self, model, config: AlignDRAWConfig, lr: float):
        """An :class:`~pyrogen.train.SVILearner` on conditional batches; validation reports
        the IWAE bound with the training number of particles (the ELBO when it is 1)."""
        from pyrogen.infer import IWAE
        from pyrogen.train import SVILearner

        calls = ConditionalLearner(model)
        return SVILearner(
            model,
            self.loss(config),
            lr=lr,
            model=calls.model,
            guide=calls.guide,
            eval_loss=IWAE(config.num_particles, max_plate_nesting=1),
        )

    def log_likelihood(self, model, config, data, *, context: Any = None, **options):
        """The importance-sampling estimate of :math:`\\log p(x \\mid y)`: ``data`` the
        images, ``context`` their captions (token ids, or a pair (ids, lengths))."""
        if context is None:
            raise ValueError(
                "context: alignDRAW scores log p(x | caption); pass the images' captions as "
                "context="
            )
        options[self.context_option] = context
        return super().log_likelihood(model, config, data, **options)

    @torch.no_grad()
    def test_bound(self, model, data, context: Any, batch_size: int = 100) -> tuple[float, float]:
        r"""The mean variational bound :math:`\mathcal L(x, y) = -\mathcal L^x -
        \sum_t \mathrm{KL}_t` over the pairs (one draw of :math:`z_{1:T}` per example, the KL
        terms in closed form, :meth:`~pyrogen.models.draw.DRAW.loss_terms`) and its
        standard error over examples."""
        was_training = model.training
        model.eval()
        try:
            ref = next(model.parameters())
            values = []
            for start in range(0, data.shape[0], batch_size):
                x = data[start : start + batch_size].to(ref.device, ref.dtype)
                c = _rows(context, slice(start, start + batch_size), ref.device)
                terms = model.loss_terms(x, c)
                values.append(-(terms["reconstruction"] + terms["kl"].sum(-1)).double().cpu())
        finally:
            model.train(was_training)
        bounds = torch.cat(values)
        stderr = bounds.std().item() / math.sqrt(len(bounds)) if len(bounds) > 1 else 0.0
        return bounds.mean().item(), stderr

    def evaluate(self, model, config, data, *, context: Any = None, **options):
        """:meth:`log_likelihood`, its ``diagnostics`` holding the test bound
        (``"test_bound"``, ``"test_bound_stderr"``)."""
        result = self.log_likelihood(model, config, data, context=context, **options)
        seed = options.get("seed")
        if seed is not None:
            from pyrogen._rng import preserved_rng

            with preserved_rng():
                torch.manual_seed(int(seed))
                bound, stderr = self.test_bound(model, model._flatten(data), context)
        else:
            bound, stderr = self.test_bound(model, model._flatten(data), context)
        result.diagnostics["test_bound"] = bound
        result.diagnostics["test_bound_stderr"] = stderr
        return result
