r"""PixelCNN and PixelRNN: exact autoregressive distributions over images.

Both factorise an image :math:`x \in \mathcal X^{C \times H \times W}` in raster order,
colour channels in order within a pixel,

.. math::

    \log p(x \mid y) = \sum_{i=1}^{H} \sum_{j=1}^{W} \sum_{c=1}^{C}
        \log p\big(x_{c,i,j} \mid x_{<(i,j)},\ x_{<c,i,j},\ y\big),

with every conditional computed in one pass of a network whose masks (or recurrence) hide
the current and later pixels: the :class:`~pyrogen.nn.masked.PixelCNNNet` (masked
convolutions [1]; gated vertical and horizontal stacks [2]) or the
:class:`~pyrogen.nn.pixelrnn.PixelRNNNet` (Row LSTM [1]). The net also fixes the output: a
Bernoulli per channel (binary images; :math:`\mathcal X = \{0, 1\}`) or a ``levels``-way
softmax per channel (:math:`\mathcal X = \{0, \dots, \text{levels} - 1\}`; 256 for 8-bit
images). :math:`y` is an optional class label (``context``) for class-conditional nets.

``log_prob`` is exact and costs one network pass. ``sample`` is ancestral: one pixel (and
colour) at a time, all samples of the batch at once, and each step computes only the part
of the network that the pixel needs (see each net's ``sampler``): a window of the rows
above for the plain PixelCNN; the vertical stack once per row and the horizontal stack
on the current row up to the pixel for the gated PixelCNN; one row step of each Row LSTM
layer, the states carried from row to row, for the PixelRNN. :meth:`naive_sample`
recomputes the whole network for every pixel; both draw the same uniform numbers, so for
one seed they return the same images.

Used in a Pyro model as ``pyro.sample("x", PixelCNN(net, context=y), obs=x)`` inside
``pyro.plate("data", N)`` (see :class:`~pyrogen.models.autoregressive.AutoregressiveModel`);
there are no latent variables, so ``Trace_ELBO`` with an empty guide maximises the exact
log-likelihood.

**References**

[1] Pixel Recurrent Neural Networks. Aaron van den Oord, Nal Kalchbrenner, Koray
    Kavukcuoglu. 2016.

[2] Conditional Image Generation with PixelCNN Decoders. Aaron van den Oord, Nal
    Kalchbrenner, Oriol Vinyals, Lasse Espeholt, Alex Graves, Koray Kavukcuoglu. 2016.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyrogen.distributions.bernoulli import bernoulli_log_prob
from pyrogen.nn.masked import AutoregressiveImageNet, PixelCNNNet
from pyrogen.nn.pixelrnn import PixelRNNNet

__all__ = ["AutoregressiveImage", "PixelCNN", "PixelCNNNet", "PixelRNN", "PixelRNNNet"]


class AutoregressiveImage(TorchDistribution):
    """An image distribution given by an :class:`~pyrogen.nn.masked.AutoregressiveImageNet`
    (see the module docs); :class:`PixelCNN` and :class:`PixelRNN` are this with their nets.

    :param net: the network (its ``image_shape``, ``in_channels``, ``output`` and ``levels``
        fix the event shape ``(C, H, W)`` and the support).
    :param torch.Tensor context: integer class labels for a class-conditional net
        (``num_classes`` set), of shape ``batch_shape``; ``None`` otherwise (batch shape
        ``()``, expanded by plates).

    Values may be given as ``(..., C, H, W)``, or flat as ``(..., H * W)`` when ``C = 1``
    (the layout of pyrogen's data sets). With validation on, values outside the support and
    labels outside ``0..num_classes-1`` are a :class:`ValueError`; a wrong image size always
    is. Samples are floats (0/1) for a Bernoulli output and ``torch.long`` for a categorical
    one, shaped ``sample_shape + batch_shape + (C, H, W)``.
    """

    arg_constraints: dict = {}
    has_enumerate_support = False

    def __init__(
        self,
        net: AutoregressiveImageNet,
        *,
        context: torch.Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(net, AutoregressiveImageNet):
            raise TypeError(
                "net must be an AutoregressiveImageNet (e.g. PixelCNNNet or PixelRNNNet), got "
                f"{type(net).__name__}"
            )
        self.net = net
        if net.num_classes is None and context is not None:
            raise ValueError(
                "context: this net is not class-conditional (num_classes=None), so it takes no "
                "labels; build it with num_classes=... to condition on a class"
            )
        if net.num_classes is not None:
            if context is None:
                raise ValueError(
                    f"context: this net is class-conditional (num_classes={net.num_classes}); "
                    "pass the class labels, e.g. PixelCNN(net, context=labels)"
                )
            if not isinstance(context, torch.Tensor):
                context = torch.as_tensor(context)
            if context.dtype.is_floating_point or context.dtype.is_complex:
                raise ValueError(
                    f"context: class labels must be an integer tensor, got dtype {context.dtype}"
                )
        self.context = context
        batch_shape = torch.Size() if context is None else context.shape
        super().__init__(batch_shape, self._image_event_shape(), validate_args=validate_args)
        if self._validate_args and context is not None:
            bad = (context < 0) | (context >= net.num_classes)
            if bool(bad.any()):
                raise ValueError(
                    f"context: class labels must lie in 0..{net.num_classes - 1}, found "
                    f"{int(context[bad][0])}"
                )

    def _image_event_shape(self) -> torch.Size:
        return torch.Size((self.net.in_channels, *self.net.image_shape))

    @constraints.dependent_property(is_discrete=True, event_dim=3)
    def support(self):
        if self.net.output == "bernoulli":
            return constraints.independent(constraints.boolean, 3)
        return constraints.independent(constraints.integer_interval(0, self.net.levels - 1), 3)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        new.net = self.net
        new.context = None if self.context is None else self.context.expand(batch_shape)
        super(AutoregressiveImage, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ------------------------------------------------------------------------- log-density

    def _as_images(self, value: torch.Tensor) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"value must be a torch.Tensor, got {type(value).__name__}")
        c, h, w = self.event_shape
        if value.dim() >= 3 and value.shape[-3:] == self.event_shape:
            return value
        if c == 1 and value.dim() >= 1 and value.shape[-1] == h * w:
            return value.unflatten(-1, (1, h, w))
        expected = f"(..., {c}, {h}, {w})" + (f" or flat (..., {h * w})" if c == 1 else "")
        raise ValueError(
            f"value: wrong image size for this {type(self).__name__}: expected shape "
            f"{expected}, got {tuple(value.shape)}"
        )

    def _check_values(self, x: torch.Tensor) -> None:
        # imported here: the shared input checks live with the models, and distributions
        # must not depend on models at import time
        from pyrogen._checks import check_binary, check_finite

        if self.net.output == "bernoulli":
            check_binary(x, "value")
            return
        top = self.net.levels - 1
        if x.dtype.is_floating_point:
            check_finite(x, "value")
            bad = (x != x.round()) | (x < 0) | (x > top)
        else:
            bad = (x < 0) | (x > top)
        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"value must hold integer levels 0..{top} for a {self.net.levels}-way "
                f"categorical output, found {x[index].item():.6g} at index {index}; "
                f"quantize intensities in [0, 1] first, e.g. (x * {top}).round()"
            )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        x = self._as_images(value)
        if self._validate_args:
            self._check_values(x)
        batch = torch.broadcast_shapes(x.shape[:-3], self.batch_shape)
        x = x.expand(batch + self.event_shape).reshape((-1, *self.event_shape))
        context = None if self.context is None else self.context.expand(batch).reshape(-1)
        logits = self.net(x, context)
        if self.net.output == "bernoulli":
            lp = bernoulli_log_prob(logits.flatten(1), x.flatten(1))
        else:
            log_p = F.log_softmax(logits, dim=1)
            lp = log_p.gather(1, x.long().unsqueeze(1)).flatten(1).sum(-1)
        return lp.reshape(batch)

    def conditional_logits(self, value: torch.Tensor) -> torch.Tensor:
        """The logits of every conditional for images ``value`` (``(..., C, H, W)`` or
        ``(..., levels, C, H, W)``): what ``log_prob`` scores."""
        x = self._as_images(value)
        batch = torch.broadcast_shapes(x.shape[:-3], self.batch_shape)
        x = x.expand(batch + self.event_shape).reshape((-1, *self.event_shape))
        context = None if self.context is None else self.context.expand(batch).reshape(-1)
        logits = self.net(x, context)
        return logits.reshape(batch + logits.shape[1:])

    # ------------------------------------------------------------------------- sampling

    def sample(self, sample_shape=()) -> torch.Tensor:
        """Ancestral samples, computing per pixel only what the net's sampler needs."""
        return self._sample(sample_shape, fast=True)

    def naive_sample(self, sample_shape=()) -> torch.Tensor:
        """Ancestral samples recomputing the whole network for every pixel (and colour): the
        reference for :meth:`sample`, which returns the same images for the same seed."""
        return self._sample(sample_shape, fast=False)

    def _draw(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Inverse-CDF draw of one channel from uniforms ``u``."""
        if self.net.output == "bernoulli":
            return (u < torch.sigmoid(logits)).to(u.dtype)
        cdf = torch.softmax(logits, dim=-1).cumsum(-1)
        return (cdf < u.unsqueeze(-1)).sum(-1).clamp_(max=self.net.levels - 1).to(u.dtype)

    @torch.no_grad()
    def _sample(self, sample_shape, fast: bool) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        batch = shape[:-3]
        c_dim, height, width = self.event_shape
        n = math.prod(batch)
        ref = next(self.net.parameters())
        context = None if self.context is None else self.context.expand(batch).reshape(-1)
        u = ref.new_empty((n, c_dim, height, width)).uniform_()  # all the randomness, up front
        x = ref.new_zeros((n, c_dim, height, width))
        sampler = self.net.sampler(context) if fast else None
        for i in range(height):
            if fast:
                sampler.begin_row(x, i)
            for j in range(width):
                for c in range(c_dim):
                    if fast:
                        logits = sampler.logits(x, i, j)
                    else:
                        logits = self.net(x, context)[..., i, j]
                    x[:, c, i, j] = self._draw(logits[..., c], u[:, c, i, j])
        if self.net.output == "categorical":
            x = x.long()
        return x.reshape(shape)


class PixelCNN(AutoregressiveImage):
    """PixelCNN [1] / gated PixelCNN [2] distribution over images (see the module docs).

    :param net: a :class:`~pyrogen.nn.masked.PixelCNNNet` (``gated=True`` for the gated,
        blind-spot-free variant; ``num_classes`` for a class-conditional one).
    :param torch.Tensor context: class labels when the net is class-conditional.

    Example::

        net = PixelCNNNet((28, 28), hidden=64, layers=5, gated=True)
        model = AutoregressiveModel(net, PixelCNN, (1, 28, 28))
        svi = SVI(model.model, model.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    """


class PixelRNN(AutoregressiveImage):
    """PixelRNN distribution over images with Row LSTM layers [1] (see the module docs).

    :param net: a :class:`~pyrogen.nn.pixelrnn.PixelRNNNet`.
    """
