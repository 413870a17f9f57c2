r"""Caption fidelity: does an image show what its caption says? Scored by a small
convolutional classifier that pyrogen trains on real MNIST-with-captions images.

A caption-to-image model such as alignDRAW [1] (DRAW [3] conditioned on a caption) is asked
for an image of, say, *the digit 3 is on the left of the digit 5*. Whether the image it
draws shows that scene is read off by a classifier trained on the real images of the data
set (MNIST digits [2] on a 60 x 60 canvas, :mod:`pyrogen.data.captions`), with one softmax
head per attribute of the caption.

Attributes
----------
An image cannot tell *a on the left of b* from *b on the right of a* (the generator draws
both the same way), nor *a at the top of b* from *b at the bottom of a*, so the eight
templates describe six positions, and a caption is read in its canonical wording (that of
:func:`pyrogen.data.captions.describe_scene`): the digits are named left to right or top to
bottom. The attributes (:data:`ATTRIBUTES`, classes in :data:`NUM_CLASSES`) are

=================  ============================================================================
``count``          number of digits: class 0 one digit (templates 4-7), class 1 two (0-3)
``first``          the left (side by side) or top (one above the other) digit, or the only
                   digit: 0-9
``second``         the right or bottom digit: 0-9, or 10 (:data:`NO_DIGIT`) for a one-digit
                   caption
``position``       :data:`POSITIONS`: 0 side by side (templates 0, 1), 1 one above the other
                   (2, 3), 2-5 the corners top left, bottom right, top right, bottom left
                   (templates 4-7)
``first_colour``   coloured variant only: colour of the first digit, an index into
                   :data:`~pyrogen.data.captions.COLOURS`
``second_colour``  coloured variant only: colour of the second digit, or 4
                   (:data:`NO_COLOUR`)
=================  ============================================================================

so *the digit 5 is on the right of the digit 3 .* is ``count=1, first=3, second=5,
position=0``. Flipping *left* to *right* in a caption exchanges ``first`` and ``second``:
the flip is scored, through the digit attributes. All attributes match exactly when the
image shows the caption's scene (and colours).

Scores
------
With predictions :math:`\hat c_k(x_n)` of the classifier for image :math:`x_n` and the
attributes :math:`c_k(y_n)` of its caption :math:`y_n`, :func:`caption_fidelity` reports
the accuracy of each attribute and the share of images whose every attribute matches,

.. math::

    \mathrm{acc}_k = \frac1N \sum_{n=1}^N \mathbb 1\big[\hat c_k(x_n) = c_k(y_n)\big],
    \qquad
    \mathrm{match} = \frac1N \sum_{n=1}^N \prod_k \mathbb 1\big[\hat c_k(x_n) = c_k(y_n)\big],

with the binomial standard error :math:`\sqrt{\mathrm{match}\,(1 - \mathrm{match}) / N}`
over images, for all images and separately for the images whose caption is a *seen* or a
*held-out* composition (the flags of :attr:`pyrogen.data.captions.CaptionDataset.held_out`).
The classifier errs too: the same scores of real test images with their own captions
(:attr:`CaptionAttributeClassifier.test_fidelity`, measured by :func:`caption_classifier`)
are the ceiling against which generated images are read.

Classifier
----------
:class:`CaptionAttributeClassifier`: the canvas averaged down to :math:`30 \times 30`, three
(convolution, batch normalisation [4], ReLU) blocks with :math:`2 \times 2` max-pooling after
the first two, a fully connected ReLU layer on the flattened :math:`7 \times 7` maps (so that
the heads see where things are), and one linear head per attribute. It is trained by Adam [5]
on the sum of the heads' cross-entropies through pyrogen's training engine
(:class:`CaptionClassifierLearner`, :func:`pyrogen.train.train`).

The judge must not share the model's blind spots. The fully connected layer reads each
position of the canvas with its own weights, so a classifier trained on the model's training
split, which never shows a held-out composition (say digit 7 in the top-left corner), learns
that such a scene does not occur and misreads it: trained for 150 steps on 2,048 images of
that split it read the first digit of the held-out real test images right 0.25 of the time
against 0.79 for seen ones (49 / 451 test images). :func:`caption_classifier` therefore
trains by default on training images of *every* composition (the training split generated
with ``held_out_fraction=0``, digits from MNIST's training images only, so no test image is
seen); with the same budget it read the first digit 0.75 / 0.64 (held-out / seen, 89 / 911
images), equal within noise. The held-out compositions stay out of the *model's* training;
the classifier only has to read digits and places, which it learns from all of them.

Accuracy
--------
Measured once, on a heavily shared 2-core CPU (one thread, ``nice``): ``caption_classifier()``
with its defaults (seed 0, 1,500 steps of 64 images, Adam with peak learning rate 0.003
decayed to 0 by a cosine, on the 60,000 grey training images of every composition; 4 minutes
including generating the data), scored on the 10,000 real test images with their own
captions:

================  =====  =====  ======  ========  =============
images            count  first  second  position  match
================  =====  =====  ======  ========  =============
all (10,000)      1.000  0.975  0.985   1.000     0.960 ± 0.002
seen (8,986)      1.000  0.975  0.984   1.000     0.959 ± 0.002
held out (1,014)  1.000  0.972  0.991   1.000     0.964 ± 0.006
================  =====  =====  ======  ========  =============

So about 4% of real images are misread, almost all through a digit's identity, and equally
for seen and held-out compositions: a generated image can hardly score above 0.96. With a
constant learning rate the same budget gave 0.933 / 0.969 / 0.901 (first, second, match);
600 steps at a constant rate, 0.903 / 0.962 / 0.867.

The coloured variant (``caption_classifier(True)``, the same defaults, 2 minutes on a less
busy machine) read the first / second digit 0.952 / 0.969, both colours 0.999, count and
position 1.000, every attribute 0.921 ± 0.003 of the 10,000 test images: 0.925 of the 7,755
seen and 0.906 ± 0.006 of the 2,245 held-out ones (a held-out scene or a digit in a colour
the model's training split never gives it).

References
----------
1. *Generating Images from Captions with Attention*, Elman Mansimov, Emilio Parisotto, Jimmy
   Lei Ba, Ruslan Salakhutdinov (ICLR 2016).
2. *Gradient-Based Learning Applied to Document Recognition*, Yann LeCun, Leon Bottou, Yoshua
   Bengio, Patrick Haffner (1998).
3. *DRAW: A Recurrent Neural Network For Image Generation*, Karol Gregor, Ivo Danihelka, Alex
   Graves, Danilo Jimenez Rezende, Daan Wierstra (ICML 2015).
4. *Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate
   Shift*, Sergey Ioffe, Christian Szegedy (ICML 2015).
5. *Adam: A Method for Stochastic Optimization*, Diederik P. Kingma, Jimmy Ba (ICLR 2015).
6. *SGDR: Stochastic Gradient Descent with Warm Restarts*, Ilya Loshchilov, Frank Hutter
   (ICLR 2017).
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pyrogen._rng import preserved_rng
from pyrogen.data.captions import (
    CANVAS_SIZE,
    COLOUR_VOCABULARY,
    COLOURS,
    TEMPLATES,
    VOCABULARY,
    CaptionDataset,
    CaptionVocabulary,
    load_mnist_captions,
)
from pyrogen.evaluate.quality import default_classifier_dir, save_atomically

__all__ = [
    "ATTRIBUTES",
    "COLOUR_ATTRIBUTES",
    "NO_COLOUR",
    "NO_DIGIT",
    "NUM_CLASSES",
    "POSITIONS",
    "CaptionAttributeClassifier",
    "CaptionClassifierLearner",
    "CaptionFidelity",
    "FidelityGroup",
    "caption_attributes",
    "caption_classifier",
    "caption_fidelity",
    "dataset_attributes",
    "train_caption_classifier",
]

#: Attributes of a grey caption, in head order.
ATTRIBUTES: tuple[str, ...] = ("count", "first", "second", "position")
#: Attributes of a coloured caption: :data:`ATTRIBUTES` then the two colours.
COLOUR_ATTRIBUTES: tuple[str, ...] = (*ATTRIBUTES, "first_colour", "second_colour")
#: ``second`` of a one-digit caption.
NO_DIGIT = 10
#: ``second_colour`` of a one-digit caption.
NO_COLOUR = len(COLOURS)
#: The classes of each attribute.
NUM_CLASSES: dict[str, int] = {
    "count": 2,
    "first": 10,
    "second": NO_DIGIT + 1,
    "position": 6,
    "first_colour": len(COLOURS),
    "second_colour": NO_COLOUR + 1,
}
#: The six positions (class of ``position``).
POSITIONS: tuple[str, ...] = (
    "side by side",
    "one above the other",
    "top left",
    "bottom right",
    "top right",
    "bottom left",
)

_GROUPS = ("all", "seen", "held_out")
_VERSION = 2  # of the classifier and its training; part of the cache file name


# ---------------------------------------------------------------------------------------------
# the attributes of a caption


def _canonical(
    templates: torch.Tensor, digits: torch.Tensor, colours: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """The attributes (module docs) of captions given by template ids ``(N,)``, named digits
    ``(N, 2)`` (``a``, ``b``; -1 for none) and, when coloured, colour indices ``(N, 2)``."""
    t = templates.long()
    a, b = digits[:, 0].long(), digits[:, 1].long()
    two = t < 4
    swap = two & (t % 2 == 1)  # "a right of b", "a below b": b is the first digit
    out = {
        "count": two.long(),
        "first": torch.where(swap, b, a),
        "second": torch.where(two, torch.where(swap, a, b), torch.full_like(a, NO_DIGIT)),
        "position": torch.where(two, t // 2, t - 2),
    }
    if colours is not None:
        ca, cb = colours[:, 0].long(), colours[:, 1].long()
        out["first_colour"] = torch.where(swap, cb, ca)
        out["second_colour"] = torch.where(
            two, torch.where(swap, ca, cb), torch.full_like(ca, NO_COLOUR)
        )
    return out


def dataset_attributes(dataset: CaptionDataset) -> dict[str, torch.Tensor]:
    """The attributes (module docs) of every caption of ``dataset``, from the generator's
    record (templates, digits, colours): int64 ``(N,)`` tensors keyed by attribute name
    (:data:`ATTRIBUTES`, or :data:`COLOUR_ATTRIBUTES` for the coloured variant)."""
    if not isinstance(dataset, CaptionDataset):
        raise TypeError(f"dataset: expected a CaptionDataset, found {type(dataset).__name__}")
    return _canonical(dataset.templates, dataset.digits, dataset.colours)


def _template_patterns() -> list[re.Pattern]:
    patterns = []
    for template in TEMPLATES:
        text = re.escape(template)
        text = text.replace(re.escape("{a}"), "(?P<a>[0-9])")
        text = text.replace(re.escape("{b}"), "(?P<b>[0-9])")
        patterns.append(re.compile(text))
    return patterns


_PATTERNS = _template_patterns()
_COLOUR_INDEX = {name: i for i, name in enumerate(COLOURS)}


def _parse(caption: str, coloured: bool, where: str) -> tuple[int, int, int, int, int]:
    """``(template, a, b, colour a, colour b)`` of one caption (-1 for what it lacks)."""
    tokens = CaptionVocabulary.tokenize(caption)
    words, colours = [], []
    for i, token in enumerate(tokens):
        if token in _COLOUR_INDEX:
            if i + 1 >= len(tokens) or tokens[i + 1] != "digit":
                raise ValueError(
                    f"{where}: the colour {token!r} must come just before 'digit' in {caption!r}"
                )
            colours.append(_COLOUR_INDEX[token])
        else:
            words.append(token)
    text = " ".join(words)
    for template, pattern in enumerate(_PATTERNS):
        found = pattern.fullmatch(text)
        if found is None:
            continue
        named = found.groupdict()
        a, b = int(named["a"]), int(named.get("b") or -1)
        num_digits = 2 if template < 4 else 1
        if coloured and len(colours) != num_digits:
            raise ValueError(
                f"{where}: a coloured caption names a colour for each of its {num_digits} "
                f"digit(s); found {len(colours)} in {caption!r}"
            )
        if not coloured and colours:
            raise ValueError(
                f"{where}: the classifier reads grey images and no colours; found a colour "
                f"in {caption!r} (use a classifier of the coloured variant)"
            )
        colours += [-1] * (2 - len(colours))
        return template, a, b, colours[0], colours[1]
    raise ValueError(
        f"{where}: {caption!r} is not a caption of MNIST with captions (none of the eight "
        "templates of pyrogen.data.captions.TEMPLATES, with digits 0-9 and, in the coloured "
        "variant, a colour before each 'digit')"
    )


def caption_attributes(
    captions: Sequence[str] | torch.Tensor, *, coloured: bool = False
) -> dict[str, torch.Tensor]:
    """The attributes (module docs) of ``captions``: int64 ``(N,)`` tensors keyed by
    attribute name.

    :param captions: ``N`` caption strings (tokens separated by white space, as in the data
        set: ``"the digit 3 is on the left of the digit 5 ."``), or an int ``(N, L)`` tensor
        of token ids padded with the vocabulary's padding id.
    :param bool coloured: the captions are of the coloured variant (a colour before each
        ``digit``; token ids of :data:`~pyrogen.data.captions.COLOUR_VOCABULARY`).
    :raises ValueError: a caption that matches none of the templates, a token id outside the
        vocabulary, or colours that the variant does not have (the message names
        ``captions[i]``).
    """
    coloured = bool(coloured)
    if isinstance(captions, np.ndarray):
        captions = torch.from_numpy(captions)
    if isinstance(captions, torch.Tensor):
        if captions.dim() != 2 or captions.dtype.is_floating_point or captions.is_complex():
            raise ValueError(
                "captions: expected an integer (N, L) tensor of token ids, found "
                f"{captions.dtype} of shape {tuple(captions.shape)}"
            )
        vocabulary = CaptionVocabulary(COLOUR_VOCABULARY if coloured else VOCABULARY)
        texts = []
        for i, row in enumerate(captions.cpu()):
            try:
                texts.append(vocabulary.decode(row))
            except ValueError as error:
                message = str(error).removeprefix("ids: ")
                raise ValueError(f"captions[{i}]: {message}") from None
    elif isinstance(captions, str) or not isinstance(captions, Sequence):
        raise ValueError(
            "captions: expected a sequence of caption strings or an (N, L) tensor of token "
            f"ids, found {type(captions).__name__}"
        )
    else:
        texts = list(captions)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"captions[{i}]: expected a str, found {type(text).__name__}")
    parsed = [_parse(text, coloured, f"captions[{i}]") for i, text in enumerate(texts)]
    table = torch.tensor(parsed, dtype=torch.int64).reshape(-1, 5)
    return _canonical(table[:, 0], table[:, 1:3], table[:, 3:5] if coloured else None)


# ---------------------------------------------------------------------------------------------
# the classifier


class CaptionAttributeClassifier(nn.Module):
    r"""A small convolutional network with one softmax head per caption attribute (module
    docs).

    :param bool coloured: read ``3 x 60 x 60`` images of the coloured variant and add the
        colour heads (:data:`COLOUR_ATTRIBUTES`); else ``1 x 60 x 60`` grey images
        (:data:`ATTRIBUTES`).
    :param widths: feature maps of the three convolutions (5 x 5, 3 x 3, 3 x 3).
    :param int hidden: units of the fully connected layer.

    Images may be ``(B, C * 3600)``, ``(B, C, 60, 60)`` or, grey, ``(B, 60, 60)``, values in
    about ``[0, 1]`` (grey levels, probabilities or binary samples).
    :attr:`test_fidelity` holds the scores on real test images measured by
    :func:`caption_classifier` (``None`` when not measured).
    """

    def __init__(
        self, coloured: bool = False, widths: Sequence[int] = (16, 32, 64), hidden: int = 128
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths: expected three positive ints, found {widths}")
        if int(hidden) < 1:
            raise ValueError(f"hidden: expected a positive int, found {hidden}")
        self.coloured = bool(coloured)
        self.channels = 3 if self.coloured else 1
        self.attributes = COLOUR_ATTRIBUTES if self.coloured else ATTRIBUTES
        self.config = {"coloured": self.coloured, "widths": list(widths), "hidden": int(hidden)}
        w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(self.channels, w1, 5, padding=2)
        self.norm1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(w2)
        self.conv3 = nn.Conv2d(w2, w3, 3, padding=1)
        self.norm3 = nn.BatchNorm2d(w3)
        side = CANVAS_SIZE // 2 // 2 // 2  # 60 -> 30 (average) -> 15 -> 7 (max-pooling)
        self.hidden = nn.Linear(w3 * side * side, int(hidden))
        self.heads = nn.ModuleDict(
            {name: nn.Linear(int(hidden), NUM_CLASSES[name]) for name in self.attributes}
        )
        #: scores of real test images with their own captions, by group ``"all"``,
        #: ``"seen"``, ``"held_out"`` (set by :func:`caption_classifier`)
        self.test_fidelity: dict[str, FidelityGroup] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, 60, 60)``."""
        return (self.channels, CANVAS_SIZE, CANVAS_SIZE)

    def images(self, x: torch.Tensor, name: str = "images") -> torch.Tensor:
        """``x`` as ``(B, C, 60, 60)``; a ValueError naming ``name`` for other shapes."""
        c, h, w = self.image_shape
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a tensor, found {type(x).__name__}")
        if x.dim() == 2 and x.shape[1] == c * h * w:
            return x.reshape(-1, c, h, w)
        if x.dim() == 3 and c == 1 and tuple(x.shape[1:]) == (h, w):
            return x.unsqueeze(1)
        if x.dim() == 4 and tuple(x.shape[1:]) == (c, h, w):
            return x
        grey = f", (B, {h}, {w})" if c == 1 else ""
        raise ValueError(
            f"{name}: expected images of shape (B, {c * h * w}), (B, {c}, {h}, {w}){grey}, "
            f"found {tuple(x.shape)}"
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``(B, classes)`` of every head, keyed by attribute name."""
        h = F.avg_pool2d(self.images(x).to(self.conv1.weight.dtype), 2)
        h = F.max_pool2d(F.relu(self.norm1(self.conv1(h))), 2)
        h = F.max_pool2d(F.relu(self.norm2(self.conv2(h))), 2)
        h = F.relu(self.norm3(self.conv3(h)))
        h = F.relu(self.hidden(h.flatten(1)))
        return {name: head(h) for name, head in self.heads.items()}

    def predict(self, images: torch.Tensor, batch_size: int = 500) -> dict[str, torch.Tensor]:
        """The most probable class of each attribute, int64 ``(B,)`` tensors on the device of
        ``images`` (eval mode, no gradients, in batches; the module's mode is restored)."""
        x = self.images(images)
        device = self.conv1.weight.device
        mode = self.training
        self.eval()
        try:
            with torch.no_grad():
                parts = [
                    {k: v.argmax(-1) for k, v in self(chunk.to(device)).items()}
                    for chunk in x.split(int(batch_size))
                ]
        finally:
            self.train(mode)
        if not parts:
            return {name: torch.zeros(0, dtype=torch.int64) for name in self.attributes}
        return {k: torch.cat([p[k] for p in parts]).to(images.device) for k in self.attributes}


class _AttributeData(torch.utils.data.Dataset):
    """Images of a :class:`CaptionDataset` with their attributes as one int64 ``(N, K)``
    table; ``__getitems__`` converts a batch of uint8 pixels to float only when asked."""

    def __init__(self, dataset: CaptionDataset, attributes: Sequence[str]) -> None:
        self.pixels = dataset.pixels
        record = dataset_attributes(dataset)
        self.labels = torch.stack([record[name] for name in attributes], 1)

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        images = self.pixels.index_select(0, idx).to(torch.float32) / 255.0
        return images, self.labels.index_select(0, idx)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.__getitems__([index])
        return images[0], labels[0]


class CaptionClassifierLearner:
    r"""A learner of :func:`pyrogen.train.train` for a :class:`CaptionAttributeClassifier`:
    one Adam step on the sum of the heads' cross-entropies per batch ``(images (B, C, 60,
    60), labels (B, K))``, ``labels[:, k]`` the class of attribute ``classifier.attributes[k]``.

    ``step`` and ``evaluate`` report the mean summed cross-entropy ``loss`` and the share
    ``match`` of the batch whose every attribute is predicted right.

    :param CaptionAttributeClassifier classifier: the network (trained in place).
    :param float lr: Adam's learning rate (the peak of the schedule).
    :param decay_steps: when given, :math:`T`: the learning rate of step :math:`t` (counted
        from 0) follows a cosine from :math:`\eta` = ``lr`` down to 0 at step :math:`T`
        (Loshchilov & Hutter's schedule without restarts [6] of the module docs),
        :math:`\eta_t = \eta\, \tfrac12 \big(1 + \cos(\pi \min(t, T) / T)\big)`;
        ``None``: constant.
    """

    def __init__(
        self,
        classifier: CaptionAttributeClassifier,
        lr: float = 3e-3,
        decay_steps: int | None = None,
    ) -> None:
        self.module = classifier
        self.lr = float(lr)
        self.decay_steps = (
            None if decay_steps is None else _positive_int(decay_steps, "decay_steps")
        )
        self.optimizer = torch.optim.Adam(classifier.parameters(), lr=self.lr)
        self.count = 0  # steps taken

    def _schedule(self) -> None:
        if self.decay_steps is None:
            return
        done = min(self.count, self.decay_steps) / self.decay_steps
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * 0.5 * (1.0 + math.cos(math.pi * done))

    def _scores(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self.module(images)
        labels = labels.to(images.device)
        loss = images.new_zeros(())
        right = torch.ones(labels.shape[0], dtype=torch.bool, device=images.device)
        for k, name in enumerate(self.module.attributes):
            loss = loss + F.cross_entropy(logits[name], labels[:, k])
            right &= logits[name].detach().argmax(-1) == labels[:, k]
        return loss, right.float().mean()

    def step(self, batch) -> dict[str, Any]:
        self.module.train()
        self._schedule()
        loss, match = self._scores(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.count += 1
        return {"loss": loss.detach(), "match": match}

    def evaluate(self, batch) -> dict[str, Any]:
        mode = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                loss, match = self._scores(batch)
        finally:
            self.module.train(mode)
        return {"loss": loss, "match": match}

    def set_lr(self, lr: float) -> None:
        """Set the learning rate (the peak, when a decay is scheduled)."""
        self.lr = float(lr)
        for group in self.optimizer.param_groups:
            group["lr"] = float(lr)
        self._schedule()

    def to(self, device: torch.device) -> CaptionClassifierLearner:
        self.module.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "count": self.count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.count = int(state["count"])


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive int, found {value!r}")
    return int(value)


def train_caption_classifier(
    dataset: CaptionDataset,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    widths: Sequence[int] = (16, 32, 64),
    hidden: int = 128,
) -> CaptionAttributeClassifier:
    """Train a :class:`CaptionAttributeClassifier` on the images and attributes of
    ``dataset`` (normally the training split) through :func:`pyrogen.train.train`.

    :param CaptionDataset dataset: real images with their captions' record; the coloured
        variant gives a classifier with colour heads.
    :param int steps: Adam steps (the epochs that take).
    :param int batch_size: images per step.
    :param float lr: Adam's peak learning rate, decayed to 0 over ``steps`` by a cosine
        (:class:`CaptionClassifierLearner`).
    :param int seed: seeds the initialisation and the data order; the caller's global random
        streams are left as they were.
    :param device: where to train (``"auto"``: CUDA when available).
    :param bool progress: show the engine's progress bar.
    :returns: the classifier in eval mode, on ``device``.
    """
    from pyrogen.train import train

    if not isinstance(dataset, CaptionDataset):
        raise TypeError(f"dataset: expected a CaptionDataset, found {type(dataset).__name__}")
    steps = _positive_int(steps, "steps")
    batch_size = _positive_int(batch_size, "batch_size")
    if not float(lr) > 0:
        raise ValueError(f"lr: expected a positive learning rate, found {lr!r}")
    with preserved_rng():
        torch.manual_seed(int(seed))
        net = CaptionAttributeClassifier(dataset.colours is not None, widths, hidden)
        data = _AttributeData(dataset, net.attributes)
        learner = CaptionClassifierLearner(net, lr, decay_steps=steps)
        per_epoch = math.ceil(len(data) / batch_size)
        train(
            learner,
            data,
            epochs=math.ceil(steps / per_epoch),
            max_steps=steps,
            batch_size=batch_size,
            seed=int(seed),
            device=device,
            progress=progress,
            log_every=50,
        )
    return net.eval()


# ---------------------------------------------------------------------------------------------
# scores


@dataclass(frozen=True)
class FidelityGroup:
    """The scores of one group of images (module docs).

    :ivar int num_images: images in the group.
    :ivar dict accuracy: share of the group whose attribute is predicted as its caption says,
        by attribute name (NaN for an empty group).
    :ivar float match: share of the group whose every attribute matches (NaN when empty).
    """

    num_images: int
    accuracy: dict[str, float]
    match: float

    @property
    def match_stderr(self) -> float:
        r"""Binomial standard error of :attr:`match`, :math:`\sqrt{m (1 - m) / N}`."""
        if self.num_images == 0:
            return float("nan")
        return math.sqrt(self.match * (1.0 - self.match) / self.num_images)


@dataclass
class CaptionFidelity:
    """What :func:`caption_fidelity` measured.

    :ivar tuple attributes: the attributes scored.
    :ivar FidelityGroup overall: the scores of all images.
    :ivar seen: the scores of the images whose caption is a seen composition (``None`` when
        no flags were given).
    :ivar held_out: the same for held-out compositions (``None`` when no flags were given).
    :ivar dict predicted: int64 ``(N,)`` classes read by the classifier, by attribute.
    :ivar dict expected: int64 ``(N,)`` classes the captions say, by attribute.
    :ivar dict correct: bool ``(N,)`` per attribute, and ``"match"``: every attribute right.
    :ivar flags: the bool ``(N,)`` held-out flags given (``None`` when none were).
    """

    attributes: tuple[str, ...]
    overall: FidelityGroup
    seen: FidelityGroup | None
    held_out: FidelityGroup | None
    predicted: dict[str, torch.Tensor] = field(repr=False)
    expected: dict[str, torch.Tensor] = field(repr=False)
    correct: dict[str, torch.Tensor] = field(repr=False)
    flags: torch.Tensor | None = field(default=None, repr=False)

    def groups(self) -> dict[str, FidelityGroup]:
        """The groups measured, keyed ``"all"``, and ``"seen"``, ``"held_out"`` when flagged."""
        out = {"all": self.overall}
        if self.seen is not None and self.held_out is not None:
            out.update(seen=self.seen, held_out=self.held_out)
        return out

    def markdown(self) -> str:
        """A markdown table: a row per group, a column per attribute, then ``match`` with its
        standard error and the number of images."""
        head = ["images", *self.attributes, "match"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, group in self.groups().items():
            cells = [f"{group.accuracy[a]:.3f}" for a in self.attributes]
            match = f"{group.match:.3f} ± {group.match_stderr:.3f}"
            lines.append(f"| {name} ({group.num_images}) | " + " | ".join([*cells, match]) + " |")
        return "\n".join(lines)


def _group(correct: dict[str, torch.Tensor], attributes: Sequence[str], keep) -> FidelityGroup:
    n = int(keep.sum()) if keep is not None else int(correct["match"].numel())

    def share(values: torch.Tensor) -> float:
        values = values if keep is None else values[keep]
        return float(values.double().mean()) if n else float("nan")

    return FidelityGroup(n, {a: share(correct[a]) for a in attributes}, share(correct["match"]))


def _score(
    predicted: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    attributes: Sequence[str],
    flags: torch.Tensor | None,
) -> CaptionFidelity:
    predicted = {a: predicted[a].detach().cpu().long() for a in attributes}
    expected = {a: expected[a].detach().cpu().long() for a in attributes}
    correct = {a: predicted[a] == expected[a] for a in attributes}
    n = next(iter(expected.values())).shape[0]
    match = torch.ones(n, dtype=torch.bool)
    for a in attributes:
        match &= correct[a]
    correct["match"] = match
    return CaptionFidelity(
        attributes=tuple(attributes),
        overall=_group(correct, attributes, None),
        seen=None if flags is None else _group(correct, attributes, ~flags),
        held_out=None if flags is None else _group(correct, attributes, flags),
        predicted=predicted,
        expected=expected,
        correct=correct,
        flags=flags,
    )


def _flags(held_out: Any, n: int) -> torch.Tensor | None:
    if held_out is None:
        return None
    flags = torch.as_tensor(np.asarray(held_out) if not torch.is_tensor(held_out) else held_out)
    if flags.dtype != torch.bool:
        raise ValueError(f"held_out: expected bool flags, found dtype {flags.dtype}")
    if tuple(flags.shape) != (n,):
        raise ValueError(
            f"held_out: expected one flag per image, shape ({n},), found {tuple(flags.shape)}"
        )
    return flags.detach().cpu()


def _expected(captions: Any, attributes: Sequence[str], n: int) -> dict[str, torch.Tensor]:
    coloured = "first_colour" in attributes
    if isinstance(captions, CaptionDataset):
        if (captions.colours is not None) != coloured:
            raise ValueError(
                f"captions: a {'coloured' if captions.colours is not None else 'grey'} data set "
                f"for a {'coloured' if coloured else 'grey'} classifier"
            )
        found = dataset_attributes(captions)
    elif isinstance(captions, Mapping):
        missing = [a for a in attributes if a not in captions]
        if missing:
            raise ValueError(f"captions: the attribute table lacks {missing}")
        found = {a: torch.as_tensor(captions[a]) for a in attributes}
        for a, v in found.items():
            if v.dim() != 1 or v.dtype.is_floating_point:
                raise ValueError(
                    f"captions[{a!r}]: expected int classes of shape (N,), found {v.dtype} "
                    f"{tuple(v.shape)}"
                )
            if v.numel() and (int(v.min()) < 0 or int(v.max()) >= NUM_CLASSES[a]):
                raise ValueError(f"captions[{a!r}]: expected classes in [0, {NUM_CLASSES[a]})")
    else:
        found = caption_attributes(captions, coloured=coloured)
    for a in attributes:
        if found[a].shape[0] != n:
            raise ValueError(
                f"captions: expected one caption per image ({n}), found {found[a].shape[0]}"
            )
    return found


def caption_fidelity(
    images: torch.Tensor,
    captions: Sequence[str] | torch.Tensor | Mapping[str, torch.Tensor] | CaptionDataset,
    classifier: CaptionAttributeClassifier,
    *,
    held_out: torch.Tensor | Sequence[bool] | None = None,
    batch_size: int = 500,
) -> CaptionFidelity:
    """How often ``images`` show what ``captions`` say, read by ``classifier`` (module docs).

    :param images: ``N`` images of the classifier's variant: ``(N, C * 3600)``,
        ``(N, C, 60, 60)`` or, grey, ``(N, 60, 60)``; e.g. a caption-to-image model's
        samples for the test captions.
    :param captions: what each image should show: ``N`` caption strings, an int ``(N, L)``
        tensor of token ids, a :class:`~pyrogen.data.captions.CaptionDataset` (its record),
        or a table of attributes (:func:`dataset_attributes`).
    :param classifier: a :class:`CaptionAttributeClassifier` (or any object with
        ``attributes`` and ``predict(images) -> {attribute: (N,) classes}``).
    :param held_out: bool ``(N,)``: the caption's composition is held out of training
        (:attr:`~pyrogen.data.captions.CaptionDataset.held_out` of the test split); when
        given, the scores are also reported for the seen (``~held_out``) and the held-out
        images apart.
    :param int batch_size: images per forward pass of the classifier.
    :returns: a :class:`CaptionFidelity`.
    :raises ValueError: images of the wrong shape or with NaN / infinite values, a number of
        captions other than of images, a caption that is not one of the data set's, flags of
        the wrong shape or type (the message names the argument).
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        raise ValueError(
            f"images: expected a tensor of N images, found {type(images).__name__}"
            + (f" of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else "")
        )
    if hasattr(classifier, "images"):
        classifier.images(images)  # the shape check, naming "images"
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images: contains NaN or infinite values")
    attributes = tuple(classifier.attributes)
    n = images.shape[0]
    expected = _expected(captions, attributes, n)
    flags = _flags(held_out, n)
    predicted = classifier.predict(images, batch_size=_positive_int(batch_size, "batch_size"))
    return _score(predicted, expected, attributes, flags)


# ---------------------------------------------------------------------------------------------
# the trained, cached classifier


def _predict_dataset(
    classifier: CaptionAttributeClassifier, dataset: CaptionDataset, batch_size: int = 500
) -> dict[str, torch.Tensor]:
    """Predictions for every image of ``dataset``, converting its uint8 pixels batch by batch."""
    parts = [
        classifier.predict(chunk.to(torch.float32) / 255.0, batch_size)
        for chunk in dataset.pixels.split(batch_size)
    ]
    return {a: torch.cat([p[a] for p in parts]) for a in classifier.attributes}


def caption_classifier(
    coloured: bool = False,
    *,
    seed: int = 0,
    held_out_fraction: float = 0.1,
    held_out_colours: int = 4,
    all_compositions: bool = True,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 3e-3,
    train_size: int | None = None,
    test_size: int | None = None,
    root: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    retrain: bool = False,
    device: str | torch.device = "auto",
    progress: bool = False,
    verbose: bool = False,
) -> CaptionAttributeClassifier:
    """The caption-attribute classifier of MNIST with captions, trained on the training split
    and scored on the test split (:func:`~pyrogen.data.captions.load_mnist_captions` with
    ``seed``, ``coloured``, ``held_out_fraction``), loaded from the cache when it is there.

    :param bool coloured: the coloured variant.
    :param int seed: the data set's seed (it chooses the held-out compositions, so the
        classifier must come from the same seed as the model it scores) and the training
        seed.
    :param float held_out_fraction: as in the data set: which test images are flagged
        held out.
    :param int held_out_colours: as in the data set (coloured variant).
    :param bool all_compositions: train on training images of every composition (the
        training split generated with ``held_out_fraction=0`` and ``held_out_colours=0``;
        default, see the module docs); ``False``: on the model's own training split.
    :param int steps: training steps (default 1,500).
    :param int batch_size: images per step (default 64).
    :param float lr: Adam's learning rate (default 0.003).
    :param train_size: training images (default: the whole split, 60,000).
    :param test_size: test images scored (default: the whole split, 10,000).
    :param root: data folder of the MNIST files.
    :param cache: folder of the cached classifiers, by default
        :func:`pyrogen.evaluate.quality.default_classifier_dir` (``$PYROGEN_CLASSIFIER_DIR``,
        else ``~/.cache/pyrogen/quality``). One file per variant, seed and setting (e.g.
        ``mnist_captions_fidelity_s0_h0.1_all_n1500_b64_lr0.003_tall_eall_v2.pt``: variant,
        seed, held-out fraction (and colours), training compositions, steps, batch size,
        learning rate, training and test sizes, version)
        holds the weights, the settings and the test scores, written atomically.
    :param bool retrain: train even when a cached classifier exists (and overwrite it).
    :param device: where to train.
    :param bool progress: show the training progress bar.
    :param bool verbose: print the test scores after training.
    :returns: the classifier in eval mode on the CPU; its scores on real test images with
        their own captions in :attr:`CaptionAttributeClassifier.test_fidelity`.
    """
    steps = _positive_int(steps, "steps")
    batch_size = _positive_int(batch_size, "batch_size")
    sizes = {"train_size": train_size, "test_size": test_size}
    for name, value in sizes.items():
        if value is not None:
            _positive_int(value, name)
    variant = "mnist_captions_colour" if coloured else "mnist_captions"
    held = f"h{float(held_out_fraction):g}" + (f"c{int(held_out_colours)}" if coloured else "")
    folder = Path(cache).expanduser() if cache is not None else default_classifier_dir()
    name = (
        f"{variant}_fidelity_s{int(seed)}_{held}_{'all' if all_compositions else 'split'}"
        f"_n{steps}_b{batch_size}_lr{float(lr):g}_t{train_size or 'all'}_e{test_size or 'all'}"
        f"_v{_VERSION}.pt"
    )
    path = folder / name
    if path.exists() and not retrain:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = CaptionAttributeClassifier(**state["config"])
        net.load_state_dict(state["state_dict"])
        net.test_fidelity = {g: FidelityGroup(**v) for g, v in state["test_fidelity"].items()}
        return net.eval()
    options = {
        "seed": seed,
        "coloured": coloured,
        "held_out_fraction": held_out_fraction,
        "held_out_colours": held_out_colours,
    }
    test = load_mnist_captions("test", size=test_size, root=root, **options)
    if all_compositions:
        options.update(held_out_fraction=0.0, held_out_colours=0)
    train = load_mnist_captions("train", size=train_size, root=root, **options)
    net = train_caption_classifier(
        train,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        progress=progress,
    ).cpu()
    scores = _score(
        _predict_dataset(net, test), dataset_attributes(test), net.attributes, test.held_out
    )
    net.test_fidelity = scores.groups()
    if verbose:
        print(
            f"{variant} caption classifier ({steps} steps of {batch_size} on {len(train)} "
            f"training images), on {len(test)} real test images:\n{scores.markdown()}\n"
            f"saved to {path}"
        )
    save_atomically(
        {
            "state_dict": net.state_dict(),
            "config": net.config,
            "test_fidelity": {g: asdict(v) for g, v in net.test_fidelity.items()},
            "settings": {
                **options,
                "test_held_out_fraction": float(held_out_fraction),
                "test_held_out_colours": int(held_out_colours),
                "all_compositions": bool(all_compositions),
                "steps": steps,
                "batch_size": batch_size,
                "lr": float(lr),
                "train_size": len(train),
                "test_size": len(test),
            },
        },
        path,
    )
    return net
