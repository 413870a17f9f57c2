r"""MNIST with captions: the data set of alignDRAW (Mansimov et al. [1]), built from MNIST.

Each example is a :math:`60 \times 60` canvas holding one or two :math:`28 \times 28` MNIST
digits [2] that do not overlap, and a caption that says which digits they are and where they
are. The generator is seeded and deterministic: the same arguments give byte-identical data.
Nothing is downloaded beyond the registered MNIST files (``mnist/*-idx?-ubyte.gz``, found like
every registered file: ``root``, else ``$PYROGEN_DATA``, else the cache folder).

Captions
--------
One of the eight templates of the MNIST-with-captions data set of [1], chosen uniformly:

====  ===============================================================
 id   template (``a``, ``b``: digits 0-9)
====  ===============================================================
 0    ``the digit a is on the left of the digit b .``
 1    ``the digit a is on the right of the digit b .``
 2    ``the digit a is at the top of the digit b .``
 3    ``the digit a is at the bottom of the digit b .``
 4    ``the digit a is at the top left of the image .``
 5    ``the digit a is at the bottom right of the image .``
 6    ``the digit a is at the top right of the image .``
 7    ``the digit a is at the bottom left of the image .``
====  ===============================================================

so half of the images hold two digits and half one. Captions are tokenised by splitting on
white space: every word is a token, the relation phrases are several tokens (``on the left of``
is ``on``, ``the``, ``left``, ``of``), the full stop ``.`` is a token of its own, and a digit is
the token ``"0"`` ... ``"9"``. The vocabulary (:data:`VOCABULARY`) has 22 tokens, in this
order (ids 0-21)::

    0 1 2 3 4 5 6 7 8 9 the digit is on at left right top bottom of image .

Every caption of the eight templates has 12 tokens (one-digit captions trade ``the digit b``
for ``the image`` and ``on`` for a second corner word), so the grey variant needs no padding;
the coloured variant's captions have 14 (two digits) or 13 tokens and are padded to 14 with the
padding id :attr:`CaptionVocabulary.pad_id` ``= len(words)``, which is not a word (an
embedding needs ``len(words) + 1`` rows, ``padding_idx=pad_id``).
:attr:`CaptionDataset.lengths` gives the true lengths.

Placement
---------
Canvas rows and columns are numbered from the top left; a digit's box is its whole
:math:`28 \times 28` MNIST patch, recorded as ``(top, left, bottom, right)`` (bottom and right
exclusive) in :attr:`CaptionDataset.boxes`. Offsets are integers in :math:`[0, 32]`.

* ``a`` *on the left of* ``b``: the boxes are separated along columns, :math:`\text{right}_a
  \le \text{left}_b` (left offset of the left digit uniform in :math:`[0, 4]`, that of the
  right digit uniform in the remaining room), and not along rows: both row offsets are
  :math:`y_0 + \delta` with :math:`y_0 \sim U\{8..24\}` and :math:`\delta \sim U\{-8..8\}`
  independently, so the rows of the two boxes overlap (:math:`|y_a - y_b| \le 16 < 28`) and
  the caption is the only true relation of the four. *On the right of*, *at the top of* and *at
  the bottom of* are the same with the roles or the axes exchanged.
* *at the top left of the image*: row and column offsets uniform in :math:`[0, 8]`, so the
  digit's centre lies in the top-left quadrant at least 8 pixels from either midline; *right*
  and *bottom* use :math:`[24, 32]` instead.

The training split takes its digits from MNIST's 60,000 training images and the test split
from its 10,000 test images (the image of a digit ``d`` is drawn uniformly among the split's
images labelled ``d``), so no MNIST image is in both.

Held-out compositions
---------------------
A *composition* is what a caption says up to wording: *on the left of* with ``(a, b)`` and *on
the right of* with ``(b, a)`` describe the same scene, as do *at the top of* and *at the bottom
of* with the digits exchanged. There are 240 scenes (:func:`scene_id`): 100 ordered pairs side
by side, 100 one above the other, 40 single digits in a corner. The seed chooses
``round(held_out_fraction * 200)`` two-digit and ``round(held_out_fraction * 40)`` one-digit
scenes (:func:`held_out_compositions`); they are never placed in the training split, while the
test split is drawn from all scenes, so a fraction of about ``held_out_fraction`` of it shows
compositions the training split never shows (``CaptionDataset.held_out``; ``seen`` is its
negation). Both splits of one seed carry the same held-out set
(:attr:`CaptionDataset.held_out_set`), so an evaluation always uses the split the model was
trained on.

Coloured variant
----------------
``coloured=True`` draws each digit in one of :data:`COLOURS` (``red``, ``green``, ``blue``,
``white``; RGB :math:`(1,0,0), (0,1,0), (0,0,1), (1,1,1)` times the grey level) on a black
``3 x 60 x 60`` canvas and names the colour before the word ``digit`` (``the red digit 3 is on
the left of the blue digit 5 .``; 14 and 13 tokens). The vocabulary is :data:`VOCABULARY`
followed by the four colour words (26 tokens, ids 22-25; padding id 26). Besides the held-out
scenes, ``held_out_colours`` (digit, colour) pairs, each for a different digit, are chosen by
the seed and never drawn in training (a digit keeps three colours there); a test example is
held out when its scene or one of its (digit, colour) pairs is.

Determinism
-----------
Examples are drawn in blocks of 4,096, block ``k`` of a split from NumPy's PCG64 seeded by
``(seed, 2, split, coloured, k)`` and the held-out set from ``(seed, 0)`` (scenes) and
``(seed, 1)`` (colours); so a smaller ``size`` gives a prefix of the larger set, both variants
of a seed hold out the same scenes, and different seeds give different data.

References
----------
1. *Generating Images from Captions with Attention*, Elman Mansimov, Emilio Parisotto, Jimmy
   Lei Ba, Ruslan Salakhutdinov (ICLR 2016).
2. *Gradient-Based Learning Applied to Document Recognition*, Yann LeCun, Leon Bottou, Yoshua
   Bengio, Patrick Haffner (1998).
3. *DRAW: A Recurrent Neural Network For Image Generation*, Karol Gregor, Ivo Danihelka, Alex
   Graves, Danilo Jimenez Rezende, Daan Wierstra (ICML 2015).
"""

from __future__ import annotations

import numbers
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .download import find_file
from .parsers import read_idx
from .registry import get_spec

__all__ = [
    "CANVAS_SIZE",
    "COLOURS",
    "COLOUR_VOCABULARY",
    "DIGIT_SIZE",
    "NUM_SCENES",
    "SPLIT_SIZES",
    "TEMPLATES",
    "VOCABULARY",
    "CaptionDataset",
    "CaptionVocabulary",
    "HeldOut",
    "describe_scene",
    "held_out_compositions",
    "load_mnist_captions",
    "scene_id",
]

#: Side of the square canvas, in pixels.
CANVAS_SIZE = 60
#: Side of an MNIST digit patch, in pixels.
DIGIT_SIZE = 28
#: Largest row or column offset of a digit patch (60 - 28).
_MAX_OFFSET = CANVAS_SIZE - DIGIT_SIZE
#: Default number of examples per split (``size=None``).
SPLIT_SIZES: dict[str, int] = {"train": 60000, "test": 10000}

#: The eight caption templates of [1]'s MNIST with captions; ``{a}``, ``{b}``: digits.
TEMPLATES: tuple[str, ...] = (
    "the digit {a} is on the left of the digit {b} .",
    "the digit {a} is on the right of the digit {b} .",
    "the digit {a} is at the top of the digit {b} .",
    "the digit {a} is at the bottom of the digit {b} .",
    "the digit {a} is at the top left of the image .",
    "the digit {a} is at the bottom right of the image .",
    "the digit {a} is at the top right of the image .",
    "the digit {a} is at the bottom left of the image .",
)
_TWO_DIGIT = 4  # templates 0-3 name two digits, 4-7 one
#: Corners of templates 4-7 as (bottom?, right?).
_CORNERS = ((0, 0), (1, 1), (0, 1), (1, 0))

#: The 22 tokens of the captions: the digits, then the words in order of first use, then ".".
VOCABULARY: tuple[str, ...] = (
    *(str(d) for d in range(10)),
    "the",
    "digit",
    "is",
    "on",
    "at",
    "left",
    "right",
    "top",
    "bottom",
    "of",
    "image",
    ".",
)
#: Colours of the coloured variant and their RGB values.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (1, 0, 0),
    "green": (0, 1, 0),
    "blue": (0, 0, 1),
    "white": (1, 1, 1),
}
#: The 26 tokens of the coloured variant: :data:`VOCABULARY` then the colour words.
COLOUR_VOCABULARY: tuple[str, ...] = (*VOCABULARY, *COLOURS)
#: Number of compositions up to wording: 100 + 100 two-digit scenes, 40 one-digit scenes.
NUM_SCENES = 240

_BLOCK = 4096  # examples per independently seeded block
_VERSION = 1  # of the generator; part of the in-memory cache key


@dataclass(frozen=True)
class CaptionVocabulary:
    """Token <-> id mapping of caption words; ids are positions in ``words``.

    :param words: the tokens, in id order.

    ``pad_id == len(words)`` pads captions to a common length; it is not a word.
    """

    words: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.words)) != len(self.words):
            raise ValueError(f"words: expected distinct tokens, found {self.words}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    @property
    def pad_id(self) -> int:
        """Id of the padding after a caption's last token (``len(words)``)."""
        return len(self.words)

    @staticmethod
    def tokenize(caption: str) -> list[str]:
        """The tokens of ``caption``: split on white space (``.`` is written apart)."""
        if not isinstance(caption, str):
            raise TypeError(f"caption: expected a str, found {type(caption).__name__}")
        return caption.split()

    def encode(self, caption: str, length: int | None = None) -> torch.Tensor:
        """Token ids of ``caption`` as an int64 tensor, padded with :attr:`pad_id` to
        ``length`` when given.

        :raises ValueError: a token is not in the vocabulary, or the caption is longer than
            ``length``.
        """
        tokens = self.tokenize(caption)
        unknown = [t for t in tokens if t not in self._index]
        if unknown:
            raise ValueError(
                f"caption: unknown token(s) {unknown} in {caption!r}; the vocabulary is "
                f"{' '.join(self.words)}"
            )
        ids = [self._index[t] for t in tokens]
        if length is not None:
            if len(ids) > length:
                raise ValueError(
                    f"length: the caption has {len(ids)} tokens, more than length={length}"
                )
            ids += [self.pad_id] * (length - len(ids))
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The caption of token ids ``ids`` (1-D), stopping at the first :attr:`pad_id`.

        :raises ValueError: an id that is neither a word nor the padding.
        """
        ids = torch.as_tensor(ids).reshape(-1).tolist()
        words = []
        for i in ids:
            if i == self.pad_id:
                break
            if not 0 <= i < len(self.words):
                raise ValueError(
                    f"ids: token id {i} is outside the vocabulary (0-{len(self.words) - 1}, "
                    f"padding {self.pad_id})"
                )
            words.append(self.words[i])
        return " ".join(words)


# ---------------------------------------------------------------------------------------------
# compositions


def scene_id(template: int, a: int, b: int = -1) -> int:
    """The composition of a caption up to wording, as an integer in ``[0, 240)``.

    ``a`` left of ``b`` (template 0) and ``b`` right of ``a`` (template 1) are scene
    ``10 a + b``; ``a`` above ``b`` (template 2) and ``b`` below ``a`` (template 3) are
    ``100 + 10 a + b``; digit ``a`` in corner ``template - 4`` is ``200 + 10 (template - 4) + a``.
    """
    return int(_scene_ids(np.asarray([template]), np.asarray([a]), np.asarray([b]))[0])


def _scene_ids(template: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.any((template < 0) | (template > 7)):
        raise ValueError(f"template: expected 0-7, found {np.unique(template).tolist()}")
    if np.any((a < 0) | (a > 9)) or np.any((template < _TWO_DIGIT) & ((b < 0) | (b > 9))):
        raise ValueError("a, b: expected digits 0-9 (b only for templates 0-3)")
    first = np.where(template % 2 == 0, a, b)  # left / top digit
    second = np.where(template % 2 == 0, b, a)
    two = 100 * (template // 2) + 10 * first + second
    one = 200 + 10 * (template - _TWO_DIGIT) + a
    return np.where(template < _TWO_DIGIT, two, one).astype(np.int64)


def describe_scene(scene: int) -> str:
    """A caption of scene ``scene`` in its canonical wording (templates 0, 2 or 4-7), with
    ``.`` dropped; e.g. ``describe_scene(35) == "the digit 3 is on the left of the digit 5"``."""
    scene = int(scene)
    if not 0 <= scene < NUM_SCENES:
        raise ValueError(f"scene: expected 0-{NUM_SCENES - 1}, found {scene}")
    if scene < 200:
        template, a, b = 2 * (scene // 100), (scene % 100) // 10, scene % 10
    else:
        template, a, b = _TWO_DIGIT + (scene - 200) // 10, scene % 10, 0
    return TEMPLATES[template].format(a=a, b=b)[:-2]


@dataclass(frozen=True)
class HeldOut:
    """The compositions that a seed keeps out of the training split.

    :ivar scenes: sorted scene ids (:func:`scene_id`) never placed in training.
    :ivar colour_pairs: sorted ``(digit, colour index)`` pairs never drawn in training (the
        coloured variant only; colour index into :data:`COLOURS`).
    """

    scenes: tuple[int, ...]
    colour_pairs: tuple[tuple[int, int], ...] = ()

    def describe(self) -> list[str]:
        """The held-out compositions in words."""
        names = list(COLOURS)
        out = [describe_scene(s) for s in self.scenes]
        out += [f"the digit {d} in {names[c]}" for d, c in self.colour_pairs]
        return out


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed: expected a non-negative int, found {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative int, found {seed}")
    return int(seed)


def _check_fraction(held_out_fraction: Any) -> float:
    if isinstance(held_out_fraction, bool) or not isinstance(held_out_fraction, numbers.Real):
        raise ValueError(
            f"held_out_fraction: expected a number in [0, 0.5], found {held_out_fraction!r}"
        )
    if not 0.0 <= float(held_out_fraction) <= 0.5:
        raise ValueError(
            f"held_out_fraction: expected a number in [0, 0.5], found {held_out_fraction}"
        )
    return float(held_out_fraction)


def _check_colour_count(held_out_colours: Any) -> int:
    if (
        isinstance(held_out_colours, bool)
        or not isinstance(held_out_colours, numbers.Integral)
        or not 0 <= held_out_colours <= 10
    ):
        raise ValueError(
            f"held_out_colours: expected an int in [0, 10], found {held_out_colours!r}"
        )
    return int(held_out_colours)


def held_out_compositions(
    seed: int = 0,
    held_out_fraction: float = 0.1,
    *,
    coloured: bool = False,
    held_out_colours: int = 4,
) -> HeldOut:
    """The compositions that ``seed`` keeps out of the training split (see the module
    docstring): ``round(held_out_fraction * 200)`` of the 200 two-digit scenes and
    ``round(held_out_fraction * 40)`` of the 40 one-digit scenes, and, when ``coloured``,
    ``held_out_colours`` (digit, colour) pairs for distinct digits.

    :raises ValueError: ``seed`` not a non-negative int, ``held_out_fraction`` outside
        ``[0, 0.5]``, ``held_out_colours`` outside ``[0, 10]``.
    """
    seed = _check_seed(seed)
    frac = _check_fraction(held_out_fraction)
    n_colours = _check_colour_count(held_out_colours)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    two = rng.permutation(200)[: round(frac * 200)]
    one = 200 + rng.permutation(40)[: round(frac * 40)]
    scenes = tuple(sorted(int(s) for s in np.concatenate([two, one])))
    pairs: tuple[tuple[int, int], ...] = ()
    if coloured and n_colours:
        crng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        digits = crng.permutation(10)[:n_colours]
        colours = crng.integers(len(COLOURS), size=n_colours)
        pairs = tuple(sorted((int(d), int(c)) for d, c in zip(digits, colours, strict=True)))
    return HeldOut(scenes, pairs)


# ---------------------------------------------------------------------------------------------
# the data set


class CaptionDataset(Dataset):
    """One split of MNIST with captions, in memory.

    Images are stored as uint8 (:attr:`pixels`, ``(N, C, 60, 60)``, grey level times 255) and
    returned as float32 in ``[0, 1]`` flattened to ``(C * 60 * 60,)``, channels first, as
    :class:`~pyrogen.data.ImageDataset` returns its images.

    ``dataset[i]`` is ``(image, tokens, length)``: a ``(D,)`` float32 image, the ``(L,)``
    int64 token ids padded with ``vocabulary.pad_id``, and the int64 caption length.
    ``dataset.__getitems__(indices)`` returns the batch ``(images (n, D), tokens (n, L),
    lengths (n,))`` in one gather (give a :class:`~torch.utils.data.DataLoader`
    ``collate_fn=CaptionDataset.collate``, or use :meth:`loader`).

    :ivar pixels: uint8 ``(N, C, 60, 60)``.
    :ivar tokens: int64 ``(N, L)`` token ids.
    :ivar lengths: int64 ``(N,)`` caption lengths.
    :ivar templates: int64 ``(N,)`` template ids 0-7 (:data:`TEMPLATES`).
    :ivar digits: int64 ``(N, 2)``: the digit named first (``a``) and second (``b``; -1 for a
        one-digit caption).
    :ivar colours: int64 ``(N, 2)`` colour indices into :data:`COLOURS` (-1 where no digit),
        or ``None`` for the grey variant.
    :ivar boxes: int64 ``(N, 2, 4)``: ``(top, left, bottom, right)`` of the patch of digit
        ``a`` and of digit ``b`` as placed (bottom, right exclusive; -1 where no digit).
    :ivar sources: int64 ``(N, 2)``: index of each digit's image in the split's MNIST file
        (-1 where no digit).
    :ivar scenes: int64 ``(N,)`` composition ids (:func:`scene_id`).
    :ivar held_out: bool ``(N,)``: the composition is one the training split never shows.
    :ivar held_out_set: the :class:`HeldOut` compositions of the seed (the same for both
        splits).
    :ivar vocabulary: the :class:`CaptionVocabulary`.
    """

    def __init__(
        self,
        *,
        pixels: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        templates: torch.Tensor,
        digits: torch.Tensor,
        colours: torch.Tensor | None,
        boxes: torch.Tensor,
        sources: torch.Tensor,
        scenes: torch.Tensor,
        held_out: torch.Tensor,
        held_out_set: HeldOut,
        vocabulary: CaptionVocabulary,
        name: str,
        split: str,
        seed: int,
    ) -> None:
        self.pixels = pixels
        self.tokens = tokens
        self.lengths = lengths
        self.templates = templates
        self.digits = digits
        self.colours = colours
        self.boxes = boxes
        self.sources = sources
        self.scenes = scenes
        self.held_out = held_out
        self.held_out_set = held_out_set
        self.vocabulary = vocabulary
        self.name = name
        self.split = split
        self.seed = seed

    def __len__(self) -> int:
        return self.pixels.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, 60, 60)``: channels (1 grey, 3 coloured), rows, columns."""
        return tuple(self.pixels.shape[1:])  # type: ignore[return-value]

    @property
    def num_features(self) -> int:
        """Values per image, ``D = C * 60 * 60``."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def seen(self) -> torch.Tensor:
        """bool ``(N,)``: the composition is one the training split shows (``~held_out``)."""
        return ~self.held_out

    @property
    def held_out_scenes(self) -> tuple[int, ...]:
        """The held-out scene ids of the seed (see :class:`HeldOut`)."""
        return self.held_out_set.scenes

    def _float(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.reshape(pixels.shape[0], -1).to(torch.float32) / 255.0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pixels[index].reshape(-1).to(torch.float32) / 255.0
        return x, self.tokens[index], self.lengths[index]

    def __getitems__(
        self, indices: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch at ``indices``: ``(images (n, D), tokens (n, L), lengths (n,))``."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return (
            self._float(self.pixels.index_select(0, idx)),
            self.tokens.index_select(0, idx),
            self.lengths.index_select(0, idx),
        )

    @staticmethod
    def collate(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``collate_fn`` for a DataLoader over a :class:`CaptionDataset`: passes the batch of
        :meth:`__getitems__` through (stacks a list of single examples)."""
        if isinstance(batch, tuple):
            return batch
        images, tokens, lengths = zip(*batch, strict=True)
        return torch.stack(images), torch.stack(tokens), torch.stack(lengths)

    def loader(
        self, batch_size: int, shuffle: bool = False, **kwargs: Any
    ) -> torch.utils.data.DataLoader:
        """A :class:`~torch.utils.data.DataLoader` yielding ``(images, tokens, lengths)``
        batches with one :meth:`__getitems__` call each; ``kwargs`` go to the DataLoader."""
        kwargs.setdefault("collate_fn", CaptionDataset.collate)
        return torch.utils.data.DataLoader(self, batch_size=batch_size, shuffle=shuffle, **kwargs)

    def tensor(self) -> torch.Tensor:
        """Every image as float32 ``(N, D)`` in ``[0, 1]`` (a new tensor: 4 bytes a pixel)."""
        return self._float(self.pixels)

    def images(self) -> torch.Tensor:
        """Every image as float32 ``(N, C, 60, 60)`` in ``[0, 1]``."""
        return self.pixels.to(torch.float32) / 255.0

    def captions(self, indices: Sequence[int] | None = None) -> list[str]:
        """The captions of ``indices`` (default: all) as text."""
        rows = self.tokens if indices is None else self.tokens[torch.as_tensor(indices)]
        return [self.vocabulary.decode(r) for r in rows]

    def __repr__(self) -> str:
        return (
            f"CaptionDataset(name={self.name!r}, split={self.split!r}, N={len(self)}, "
            f"image_shape={self.image_shape}, seed={self.seed}, "
            f"held_out={int(self.held_out.sum())}, vocabulary={len(self.vocabulary)})"
        )


# ---------------------------------------------------------------------------------------------
# generation


def _template_table(coloured: bool, vocab: CaptionVocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the 8 templates with placeholders -1 (digit a), -2 (b), -3 (colour of a),
    -4 (colour of b), padded; and their lengths."""
    rows = []
    for t in TEMPLATES:
        words = t.split()
        out: list[int] = []
        seen_digit = 0
        for w in words:
            if w in ("{a}", "{b}"):
                out.append(-1 if w == "{a}" else -2)
                continue
            if w == "digit" and coloured:
                out.append(-3 - seen_digit)
                seen_digit += 1
            out.append(vocab._index[w])
        rows.append(out)
    length = max(len(r) for r in rows)
    table = np.full((len(rows), length), vocab.pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return table, np.array([len(r) for r in rows], dtype=np.int64)


def _allowed_digits(held: HeldOut, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """For each template: the (a, b) pairs it may name (padded to 100) and their number."""
    table = np.zeros((len(TEMPLATES), 100, 2), dtype=np.int64)
    counts = np.zeros(len(TEMPLATES), dtype=np.int64)
    banned = np.zeros(NUM_SCENES, dtype=bool)
    if train:
        banned[list(held.scenes)] = True
    a, b = np.divmod(np.arange(100), 10)
    for t in range(len(TEMPLATES)):
        if t < _TWO_DIGIT:
            aa, bb = a, b
        else:
            aa, bb = np.arange(10), np.full(10, -1)
        keep = ~banned[_scene_ids(np.full(len(aa), t), aa, bb)]
        pairs = np.stack([aa[keep], bb[keep]], axis=1)
        counts[t] = len(pairs)
        table[t, : len(pairs)] = pairs
    return table, counts


def _pick(u: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``floor(u * counts)`` clipped to ``counts - 1`` (u in [0, 1))."""
    return np.minimum((u * counts).astype(np.int64), counts - 1)


def _generate_block(
    rng: np.random.Generator,
    n: int,
    *,
    mnist: np.ndarray,
    by_label: tuple[np.ndarray, np.ndarray, np.ndarray],
    digit_table: tuple[np.ndarray, np.ndarray],
    colour_table: tuple[np.ndarray, np.ndarray] | None,
    token_table: tuple[np.ndarray, np.ndarray],
    banned: np.ndarray,
    banned_pairs: np.ndarray | None,
    canvas: np.ndarray,
) -> dict[str, np.ndarray]:
    """Draw a block of ``n`` examples (always the same draws for a given ``rng``) and render
    the first ``len(canvas)`` into ``canvas`` (zeros, uint8 ``(keep, C, 60, 60)``)."""
    keep = len(canvas)
    order, offsets, label_counts = by_label
    pairs, pair_counts = digit_table
    template = rng.integers(len(TEMPLATES), size=n)
    ab = pairs[template, _pick(rng.random(n), pair_counts[template])]
    a, b = ab[:, 0], ab[:, 1]
    two = template < _TWO_DIGIT
    digits = np.stack([a, np.where(two, b, -1)], axis=1)

    # placement: offsets (row, col) of the first (left/top) and second digit of a pair
    lo = rng.integers(0, 5, size=n)  # separated axis, first digit: 0..4
    hi = lo + DIGIT_SIZE + _pick(rng.random(n), 5 - lo)  # second: lo + 28 .. 32
    mid = rng.integers(8, 25, size=n)  # other axis: common centre line 8..24
    d1, d2 = rng.integers(-8, 9, size=(2, n))
    corner = rng.integers(0, 9, size=(2, n))  # one digit: 0..8 from its corner
    horizontal = template < 2
    first = np.where(horizontal[:, None], np.stack([mid + d1, lo], 1), np.stack([lo, mid + d1], 1))
    second = np.where(horizontal[:, None], np.stack([mid + d2, hi], 1), np.stack([hi, mid + d2], 1))
    a_first = template % 2 == 0  # templates 0, 2: a is the left / top digit
    pos_a = np.where(a_first[:, None], first, second)
    pos_b = np.where(a_first[:, None], second, first)
    cb = np.asarray(_CORNERS)[np.clip(template - _TWO_DIGIT, 0, 3)]  # (bottom?, right?)
    pos_single = corner.T + (_MAX_OFFSET - 8) * cb
    pos_a = np.where(two[:, None], pos_a, pos_single)
    pos = np.stack([pos_a, np.where(two[:, None], pos_b, -1)], axis=1)  # (n, 2, [row, col])
    boxes = np.concatenate([pos, pos + DIGIT_SIZE], axis=2)
    boxes[~two, 1] = -1

    # images: uniform among the split's images of each digit
    u = rng.random((n, 2))
    lab = np.maximum(digits, 0)
    sources = order[offsets[lab] + _pick(u, label_counts[lab])]
    sources[~two, 1] = -1

    colours = None
    if colour_table is not None:
        allowed, allowed_counts = colour_table
        cu = rng.random((n, 2))
        colours = allowed[lab, _pick(cu, allowed_counts[lab])]
        colours[~two, 1] = -1

    # every draw is made: keep the first `keep` examples
    template, a, b, two, digits, boxes, sources = (
        v[:keep] for v in (template, a, b, two, digits, boxes, sources)
    )
    lab = lab[:keep]
    if colours is not None:
        colours = colours[:keep]
    n = keep

    # tokens
    table, lengths = token_table
    tokens = table[template].copy()
    fills = {-1: digits[:, :1], -2: digits[:, 1:]}
    if colours is not None:
        base = len(VOCABULARY)
        fills.update({-3: colours[:, :1] + base, -4: colours[:, 1:] + base})
    for placeholder, values in fills.items():
        tokens = np.where(tokens == placeholder, values, tokens)

    scenes = _scene_ids(template, a, np.where(two, b, -1))
    held = banned[scenes]
    if banned_pairs is not None:
        present = digits >= 0
        held |= (banned_pairs[lab, np.maximum(colours, 0)] & present).any(1)

    channels = canvas.shape[1]
    # windows[i, r, c] is the 28 x 28 patch of one channel of canvas i at offset (r, c): one
    # fancy-index assignment per slot and channel writes a whole digit per example (the
    # windows written by one assignment are disjoint: one per example).
    rgb = np.asarray(list(COLOURS.values()), dtype=np.uint8)
    s0, _, s2, s3 = canvas.strides
    for ch in range(channels):
        windows = np.lib.stride_tricks.as_strided(
            canvas[:, ch],
            shape=(n, _MAX_OFFSET + 1, _MAX_OFFSET + 1, DIGIT_SIZE, DIGIT_SIZE),
            strides=(s0, s2, s3, s2, s3),
            writeable=True,
        )
        for slot in (0, 1):
            k = np.nonzero(digits[:, slot] >= 0)[0]
            patch = mnist[sources[k, slot]]  # (m, 28, 28) uint8
            if colours is not None:
                patch = patch * rgb[colours[k, slot], ch][:, None, None]
            windows[k, boxes[k, slot, 0], boxes[k, slot, 1]] = patch

    return {
        "tokens": tokens,
        "lengths": lengths[template],
        "templates": template,
        "digits": digits,
        "colours": colours,
        "boxes": boxes,
        "sources": sources,
        "scenes": scenes,
        "held_out": held,
    }


_MEMORY: OrderedDict[tuple, CaptionDataset] = OrderedDict()
_MEMORY_SIZE = 4


def _check_split(split: Any) -> str:
    if split not in SPLIT_SIZES:
        raise ValueError(
            f"split: unknown split {split!r} for mnist_captions; valid splits: 'train', 'test' "
            "(there is no validation split: hold out part of 'train' if you need one)"
        )
    return split


def _check_size(size: Any, split: str) -> int:
    if size is None:
        return SPLIT_SIZES[split]
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size: expected a positive int or None, found {size!r}")
    return int(size)


def load_mnist_captions(
    split: str = "train",
    *,
    size: int | None = None,
    seed: int = 0,
    coloured: bool = False,
    held_out_fraction: float = 0.1,
    held_out_colours: int = 4,
    root: str | os.PathLike | None = None,
    download: bool = True,
    binarize: str | None = None,
    progress: bool | None = None,
    cache: bool = True,
) -> CaptionDataset:
    """One split of MNIST with captions (see the module docstring), as a
    :class:`CaptionDataset`.

    :param split: ``"train"`` (digits from MNIST's training images) or ``"test"`` (from its
        test images).
    :param size: number of examples; default :data:`SPLIT_SIZES` (60,000 / 10,000). A smaller
        size gives a prefix of the larger set.
    :param seed: chooses the held-out compositions and every random draw.
    :param coloured: the coloured variant (``3 x 60 x 60``, 26-token vocabulary).
    :param held_out_fraction: fraction of the two-digit and of the one-digit scenes held out
        of training, in ``[0, 0.5]``.
    :param held_out_colours: (digit, colour) pairs held out of training (coloured only).
    :param root: search only this folder for the MNIST files (see
        :func:`pyrogen.data.data_roots`).
    :param download: download the MNIST files when missing (also disabled by
        ``PYROGEN_NO_DOWNLOAD=1``).
    :param binarize: must be ``None``: the images are grey levels (binarize a batch with
        :func:`torch.bernoulli` for a Bernoulli likelihood); accepted so that
        :func:`pyrogen.data.load` can pass its arguments through.
    :param progress: show a progress bar (``None``: only when generation takes over 2 s).
    :param cache: reuse (and keep) the split in the in-memory cache; ``False`` always
        generates it anew.
    :raises ValueError: unknown split, bad ``size``, ``seed``, ``held_out_fraction`` or
        ``held_out_colours``, or ``binarize`` not ``None``.
    :raises DatasetNotFoundError: the MNIST files are missing and cannot be downloaded.

    Generated splits are kept in memory (the last four), keyed by every argument but ``root``
    and ``download`` (the MNIST files are checksum-verified, so their content is fixed). There
    is no disk cache: generating the default training split took 4.3 s (coloured: 6.3 s) on
    a heavily shared 2-core machine. A cached split is returned as the same object: do not
    modify its tensors in place.
    """
    split = _check_split(split)
    n = _check_size(size, split)
    seed = _check_seed(seed)
    if binarize is not None:
        raise ValueError(
            f"binarize: mnist_captions is grey-level only; found {binarize!r}. Binarize a "
            "batch with torch.bernoulli(images) for a Bernoulli likelihood"
        )
    coloured = bool(coloured)
    held = held_out_compositions(
        seed, held_out_fraction, coloured=coloured, held_out_colours=held_out_colours
    )

    # The registry's usual search and error (DatasetNotFoundError naming the file and the
    # folders searched) even when the split is cached; the files are checksum-verified, so
    # their content, hence the generated data, does not depend on where they were found.
    spec = get_spec("mnist")
    prefix = "train" if split == "train" else "t10k"
    paths = [
        find_file(spec.file(f"{prefix}-{kind}-ubyte.gz"), root, download, dataset="mnist")
        for kind in ("images-idx3", "labels-idx1")
    ]
    key = (_VERSION, split, n, seed, coloured, held)
    if cache and key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]

    images, labels = read_idx(paths[0]), read_idx(paths[1]).astype(np.int64)
    if images.shape != (spec.splits[split], 28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{paths[0]}, {paths[1]}: expected {spec.splits[split]} images (28, 28) and labels, "
            f"found {images.shape} and {labels.shape}"
        )
    order = np.argsort(labels, kind="stable")
    label_counts = np.bincount(labels, minlength=10)
    offsets = np.concatenate([[0], np.cumsum(label_counts)[:-1]])

    vocab = CaptionVocabulary(COLOUR_VOCABULARY if coloured else VOCABULARY)
    banned = np.zeros(NUM_SCENES, dtype=bool)
    banned[list(held.scenes)] = True
    colour_table = banned_pairs = None
    if coloured:
        banned_pairs = np.zeros((10, len(COLOURS)), dtype=bool)
        for d, c in held.colour_pairs:
            banned_pairs[d, c] = True
        allowed = np.zeros((10, len(COLOURS)), dtype=np.int64)
        allowed_counts = np.zeros(10, dtype=np.int64)
        for d in range(10):
            ok = np.arange(len(COLOURS)) if split == "test" else np.nonzero(~banned_pairs[d])[0]
            allowed[d, : len(ok)] = ok
            allowed_counts[d] = len(ok)
        colour_table = (allowed, allowed_counts)
    common = {
        "mnist": images,
        "by_label": (order, offsets, label_counts),
        "digit_table": _allowed_digits(held, train=split == "train"),
        "colour_table": colour_table,
        "token_table": _template_table(coloured, vocab),
        "banned": banned,
        "banned_pairs": banned_pairs,
    }
    split_code = 0 if split == "train" else 1
    parts = []
    pixels = np.zeros((n, 3 if coloured else 1, CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
    bar = tqdm(
        total=n,
        desc=f"mnist_captions {split}",
        unit="img",
        delay=0.0 if progress else 2.0,
        disable=progress is False,
    )
    with bar:
        for k, start in enumerate(range(0, n, _BLOCK)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 2, split_code, coloured, k]))
            m = min(_BLOCK, n - start)
            parts.append(_generate_block(rng, _BLOCK, canvas=pixels[start : start + m], **common))
            bar.update(m)

    def cat(name: str) -> torch.Tensor | None:
        if parts[0][name] is None:
            return None
        return torch.from_numpy(np.concatenate([p[name] for p in parts]))

    name = "mnist_captions_colour" if coloured else "mnist_captions"
    dataset = CaptionDataset(
        pixels=torch.from_numpy(pixels),
        tokens=cat("tokens"),
        lengths=cat("lengths"),
        templates=cat("templates"),
        digits=cat("digits"),
        colours=cat("colours"),
        boxes=cat("boxes"),
        sources=cat("sources"),
        scenes=cat("scenes"),
        held_out=cat("held_out"),
        held_out_set=held,
        vocabulary=vocab,
        name=name,
        split=split,
        seed=seed,
    )
    if not cache:
        return dataset
    _MEMORY[key] = dataset
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
    return dataset
