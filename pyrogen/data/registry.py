"""Registry of the image data sets that :func:`pyrogen.data.load` knows.

Each entry of :data:`DATASETS` is a frozen :class:`DatasetSpec`: what the set is, how to cite
it, its image shape, its splits and their sizes, and the files it is made of
(:class:`RemoteFile`: path relative to a data folder, canonical public download address and
SHA-256).

Files are looked for under the folders returned by :func:`pyrogen.data.data_roots`, in order:
the ``root`` argument if given; otherwise ``$PYROGEN_DATA`` (when set) and then the cache folder
``$XDG_CACHE_HOME/pyrogen`` (``~/.cache/pyrogen`` when ``XDG_CACHE_HOME`` is unset). A folder
is laid out like the project's ``shared/data``: ``<folder>/mnist/train-images-idx3-ubyte.gz``,
``<folder>/binarized_mnist/binarized_mnist_train.amat[.gz]``, and so on.

References
----------
1. *The Neural Autoregressive Distribution Estimator*, Hugo Larochelle, Iain Murray (2011).
2. *On the Quantitative Analysis of Deep Belief Networks*, Ruslan Salakhutdinov, Iain Murray
   (2008).
3. *Gradient-Based Learning Applied to Document Recognition*, Yann LeCun, Leon Bottou, Yoshua
   Bengio, Patrick Haffner (1998).
4. *Human-level concept learning through probabilistic program induction*, Brenden M. Lake,
   Ruslan Salakhutdinov, Joshua B. Tenenbaum (2015).
5. *Importance Weighted Autoencoders*, Yuri Burda, Roger Grosse, Ruslan Salakhutdinov (2015).
6. *Inductive Principles for Restricted Boltzmann Machine Learning*, Benjamin M. Marlin, Kevin
   Swersky, Bo Chen, Nando de Freitas (2010).
7. *Optical Recognition of Handwritten Digits* (UCI Machine Learning Repository), E. Alpaydin,
   C. Kaynak (1998).
8. *Generating Images from Captions with Attention*, Elman Mansimov, Emilio Parisotto, Jimmy
   Lei Ba, Ruslan Salakhutdinov (2016).

Data sets that have no file of their own but are built deterministically from registered files
are listed in :data:`GENERATED` (a :class:`GeneratedSpec` each, e.g. ``"mnist_captions"``, built
from the MNIST files); :meth:`GeneratedSpec.build` makes one split.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BINARIZATIONS",
    "DATASETS",
    "GENERATED",
    "DatasetSpec",
    "GeneratedSpec",
    "RemoteFile",
    "default_binarization",
    "get_spec",
]

#: Values of :attr:`pyrogen.data.ImageDataset.binarization` (``None`` means grey levels).
BINARIZATIONS: tuple[str, ...] = ("fixed", "dynamic", "stochastic", "threshold")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set.

    :param filename: path relative to a data folder, with ``/`` separators, e.g.
        ``"mnist/train-images-idx3-ubyte.gz"``. This is also where a download is saved.
    :param url: canonical public download address, or ``None`` when none is known.
    :param sha256: expected SHA-256 (hex) of the file, or ``None`` to skip verification.
    :param hash_of: ``"file"``: ``sha256`` is the hash of the file's bytes; ``"content"``: it is
        the hash of the *decompressed* bytes when the file found is gzip-compressed (name ending
        in ``.gz``), and of the file's bytes otherwise. ``"content"`` lets a ``.amat`` and its
        ``.amat.gz``, or two differently compressed copies of the same MNIST file, share one hash.
    :param alternatives: other accepted paths (relative to a data folder) for the same content,
        e.g. the gzipped ``.amat.gz`` for a ``.amat``. Looked for after ``filename``.
    :param convert: name of a conversion step (see :data:`pyrogen.data.download.CONVERTERS`)
        that turns the file downloaded from ``url`` into ``filename``; ``None`` when the download
        is the file itself. When set, ``sha256`` is the hash of the file as stored in a data
        folder (e.g. the project's ``shared/data``), which a local conversion does not reproduce
        byte for byte; a converted file is instead checked against the hash recorded next to it
        when it was converted.
    :param url_sha256: SHA-256 of the file served at ``url`` when ``convert`` is set (``None``:
        unknown, the download is used unverified with a warning).
    """

    filename: str
    url: str | None
    sha256: str | None
    hash_of: Literal["file", "content"] = "file"
    alternatives: tuple[str, ...] = ()
    convert: str | None = None
    url_sha256: str | None = None

    @property
    def candidates(self) -> tuple[str, ...]:
        """Accepted paths relative to a data folder, in the order they are looked for."""
        return (self.filename, *self.alternatives)


@dataclass(frozen=True)
class DatasetSpec:
    """Description of one data set.

    :param name: registry key, e.g. ``"binarized_mnist"``.
    :param description: one paragraph: what the examples are, how pixels are encoded.
    :param citation: the reference(s) to cite (title, authors, year).
    :param image_shape: ``(H, W)`` of one example.
    :param splits: split name -> number of examples (``"train+valid"`` is the concatenation of
        ``"train"`` and ``"valid"``, the usual final training set).
    :param files: the files the set is made of.
    :param binarization: ``"fixed"`` for sets shipped binary, ``None`` for grey levels.
    :param needs_download: ``False`` for sets shipped inside a dependency (no files needed).
    :param homepage: where the set is described.
    """

    name: str
    description: str
    citation: str
    image_shape: tuple[int, int]
    splits: dict[str, int] = field(hash=False)
    files: tuple[RemoteFile, ...]
    binarization: str | None
    needs_download: bool = True
    homepage: str = ""

    def file(self, filename: str) -> RemoteFile:
        """The :class:`RemoteFile` whose ``filename`` is (or ends with) ``filename``."""
        for f in self.files:
            if f.filename == filename or f.filename.endswith("/" + filename):
                return f
        known = ", ".join(f.filename for f in self.files) or "none"
        raise KeyError(f"{self.name}: no file {filename!r} in the registry (files: {known})")

    @property
    def num_pixels(self) -> int:
        """Number of pixels of one example, ``H * W``."""
        return self.image_shape[0] * self.image_shape[1]


_BMNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
# SHA-256 of the decompressed .amat files (the published ones; the gzipped copies in
# shared/data are verified through their decompressed content).
_BMNIST_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}

_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# SHA-256 of the *decompressed* IDX files. The gzip streams differ between copies (the ones in
# shared/data are re-compressed: their decompressed bytes match the official MD5s, e.g. train
# images 6bbc9ace898e44ae57da46a324031adb, but the .gz bytes differ from the mirror's), so the
# content is what is verified; an uncompressed copy (torchvision's "raw" layout) is accepted too.
_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
# SHA-256 of the .npz files as stored in shared/data (see its SHA256SUMS).
_OMNIGLOT_SHA256 = {
    "background": "8bf84167413cd00beacdce3fe582f780ab538d8dbef043a6d688f2527bbce199",
    "evaluation": "0b84c7ffd94c4841c0040e529c86a82eaaccb986d8eadad5673f7991b7475276",
}

_NOT_BURDA = (
    "This is NOT the 28x28 Omniglot split of Burda et al. (2015) (their chardata.mat, "
    "24,345 train / 8,070 test); it is a resize of the official background/evaluation sets."
)

DATASETS: dict[str, DatasetSpec] = {
    "binarized_mnist": DatasetSpec(
        name="binarized_mnist",
        description=(
            "MNIST digits with the fixed binarization of Larochelle & Murray (2011) (each pixel "
            "sampled once as Bernoulli(grey level), after Salakhutdinov & Murray 2008): "
            "50,000 train / 10,000 valid / 10,000 test images of 28x28 binary pixels, ink = 1. "
            "No labels. 'train+valid' (60,000) is the usual final training set."
        ),
        citation=(
            "The Neural Autoregressive Distribution Estimator. Hugo Larochelle, Iain Murray. "
            "AISTATS 2011. Binarization after: On the Quantitative Analysis of Deep Belief "
            "Networks. Ruslan Salakhutdinov, Iain Murray. ICML 2008."
        ),
        image_shape=(28, 28),
        splits={"train": 50000, "valid": 10000, "test": 10000, "train+valid": 60000},
        files=tuple(
            RemoteFile(
                filename=f"binarized_mnist/binarized_mnist_{s}.amat",
                url=f"{_BMNIST_URL}binarized_mnist_{s}.amat",
                sha256=_BMNIST_SHA256[s],
                hash_of="content",
                alternatives=(f"binarized_mnist/binarized_mnist_{s}.amat.gz",),
            )
            for s in ("train", "valid", "test")
        ),
        binarization="fixed",
        homepage=_BMNIST_URL,
    ),
    "mnist": DatasetSpec(
        name="mnist",
        description=(
            "MNIST handwritten digits: 60,000 train / 10,000 test images of 28x28 grey levels "
            "(uint8 / 255, ink = 1) with labels 0-9. No validation split. Downloaded from the "
            "ossci-datasets mirror of yann.lecun.com/exdb/mnist (same files)."
        ),
        citation=(
            "Gradient-Based Learning Applied to Document Recognition. Yann LeCun, Leon Bottou, "
            "Yoshua Bengio, Patrick Haffner. Proceedings of the IEEE, 1998. "
            "http://yann.lecun.com/exdb/mnist/"
        ),
        image_shape=(28, 28),
        splits={"train": 60000, "test": 10000},
        files=tuple(
            RemoteFile(
                filename=f"mnist/{stem}.gz",
                url=f"{_MNIST_URL}{stem}.gz",
                sha256=sha,
                hash_of="content",
                alternatives=(f"mnist/{stem}",),
            )
            for stem, sha in _MNIST_SHA256.items()
        ),
        binarization=None,
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "omniglot": DatasetSpec(
        name="omniglot",
        description=(
            "Omniglot handwritten characters of 50 alphabets, resized from 105x105 binary to "
            "28x28 grey levels by area averaging (ink = 1). 'train' = the official background "
            "set (964 characters x 20 drawers = 19,280), 'test' = the official evaluation set "
            "(659 x 20 = 13,180); labels are the character index within the set. " + _NOT_BURDA
        ),
        citation=(
            "Human-level concept learning through probabilistic program induction. Brenden M. "
            "Lake, Ruslan Salakhutdinov, Joshua B. Tenenbaum. Science, 2015. (The other, 28x28 "
            "split: Importance Weighted Autoencoders. Yuri Burda, Roger Grosse, Ruslan "
            "Salakhutdinov. 2015.)"
        ),
        image_shape=(28, 28),
        splits={"train": 19280, "test": 13180},
        files=tuple(
            RemoteFile(
                filename=f"omniglot/images_{s}.npz",
                url=f"{_OMNIGLOT_URL}images_{s}.zip",
                sha256=_OMNIGLOT_SHA256[s],
                convert="omniglot_zip",
                url_sha256=None,
            )
            for s in ("background", "evaluation")
        ),
        binarization=None,
        homepage="https://github.com/brendenlake/omniglot",
    ),
    "caltech101_silhouettes": DatasetSpec(
        name="caltech101_silhouettes",
        description=(
            "Caltech-101 Silhouettes (Marlin et al. 2010), 28x28 binary, split 1: 4,100 train / "
            "2,264 valid / 2,307 test silhouettes of 101 object classes; labels 0-100 (the "
            "file's 1-101 minus 1). Pixels as in the file: 0 = object, 1 = background. Images "
            "are transposed from the file's column-major (MATLAB) order so that they are upright "
            "in row-major (28, 28)."
        ),
        citation=(
            "Inductive Principles for Restricted Boltzmann Machine Learning. Benjamin M. Marlin, "
            "Kevin Swersky, Bo Chen, Nando de Freitas. AISTATS 2010."
        ),
        image_shape=(28, 28),
        splits={"train": 4100, "valid": 2264, "test": 2307, "train+valid": 6364},
        files=(
            RemoteFile(
                filename="caltech101_silhouettes/caltech101_silhouettes_28_split1.mat",
                url="https://people.cs.umass.edu/~marlin/data/caltech101_silhouettes_28_split1.mat",
                sha256="eb6735e8d84b1850fabc5590124aab1755e90c9fd28123585324398405e1e42a",
            ),
        ),
        binarization="fixed",
        homepage="https://people.cs.umass.edu/~marlin/data.shtml",
    ),
    "digits": DatasetSpec(
        name="digits",
        description=(
            "scikit-learn's shipped 8x8 handwritten digits (1,797 images, grey levels 0-16), "
            "binarized by threshold (pixel >= 8 -> 1), labels 0-9. Fixed split by "
            "numpy.random.RandomState(0).permutation(1797): the first 1,257 indices are train, "
            "the next 180 valid, the last 360 test (each sorted). Needs no download."
        ),
        citation=(
            "Optical Recognition of Handwritten Digits. E. Alpaydin, C. Kaynak. UCI Machine "
            "Learning Repository, 1998."
        ),
        image_shape=(8, 8),
        splits={"train": 1257, "valid": 180, "test": 360, "train+valid": 1437},
        files=(),
        binarization="fixed",
        needs_download=False,
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
    ),
}


@dataclass(frozen=True)
class GeneratedSpec:
    """A data set with no file of its own, built deterministically (from a seed) out of the
    files of a registered data set.

    :param name: registry key, e.g. ``"mnist_captions"``.
    :param description: one paragraph: what the examples are, what a split returns.
    :param citation: the reference(s) to cite.
    :param image_shape: ``(C, H, W)`` of one image.
    :param splits: split name -> default number of examples.
    :param source: the :data:`DATASETS` entry whose files it is built from.
    :param builder: ``"module:function"`` that builds a split, called as
        ``function(split, root=..., download=..., seed=..., binarize=..., **options)``.
    :param options: keyword arguments fixed for this entry (e.g. ``{"coloured": True}``).
    """

    name: str
    description: str
    citation: str
    image_shape: tuple[int, ...]
    splits: dict[str, int] = field(hash=False)
    source: str
    builder: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def build(self, split: str = "train", **kwargs: Any) -> Any:
        """One split: the builder called with ``split``, this entry's :attr:`options` and
        ``kwargs`` (``root``, ``download``, ``seed``, ``binarize``, the builder's own options)."""
        module, function = self.builder.split(":")
        fn = getattr(importlib.import_module(module), function)
        return fn(split, **{**self.options, **kwargs})


_CAPTIONS_CITATION = (
    "Generating Images from Captions with Attention. Elman Mansimov, Emilio Parisotto, Jimmy "
    "Lei Ba, Ruslan Salakhutdinov. ICLR 2016. Digits from: Gradient-Based Learning Applied to "
    "Document Recognition. Yann LeCun, Leon Bottou, Yoshua Bengio, Patrick Haffner. 1998."
)

GENERATED: dict[str, GeneratedSpec] = {
    "mnist_captions": GeneratedSpec(
        name="mnist_captions",
        description=(
            "MNIST with captions (Mansimov et al. 2016): one or two non-overlapping MNIST "
            "digits on a 60x60 canvas and a caption from 8 templates naming them and their "
            "placement ('the digit 3 is on the left of the digit 5 .'), 22-token vocabulary. "
            "Built from the MNIST files (train from MNIST train, test from MNIST test) by a "
            "seeded generator; the seed also picks the compositions held out of 'train'. "
            "A split is a pyrogen.data.captions.CaptionDataset (images, token ids, lengths, "
            "placement record, held-out flags)."
        ),
        citation=_CAPTIONS_CITATION,
        image_shape=(1, 60, 60),
        splits={"train": 60000, "test": 10000},
        source="mnist",
        builder="pyrogen.data.captions:load_mnist_captions",
    ),
    "mnist_captions_colour": GeneratedSpec(
        name="mnist_captions_colour",
        description=(
            "The coloured variant of mnist_captions: each digit drawn in red, green, blue or "
            "white (3x60x60) and its colour named in the caption ('the red digit 3 is ...'), "
            "26-token vocabulary; some (digit, colour) pairs are also held out of 'train'."
        ),
        citation=_CAPTIONS_CITATION,
        image_shape=(3, 60, 60),
        splits={"train": 60000, "test": 10000},
        source="mnist",
        builder="pyrogen.data.captions:load_mnist_captions",
        options={"coloured": True},
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; ``ValueError`` listing the known names otherwise
    (for a :data:`GENERATED` name: how to build it)."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a data set name (str), found {type(name).__name__}")
    try:
        return DATASETS[name]
    except KeyError:
        pass
    if name in GENERATED:
        gen = GENERATED[name]
        raise ValueError(
            f"name: {name!r} is generated from the {gen.source!r} files, not stored: build a "
            f"split with pyrogen.data.registry.GENERATED[{name!r}].build(split, seed=...) (or "
            f"{gen.builder.replace(':', '.')})"
        )
    known = sorted(DATASETS) + sorted(GENERATED)
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"name: unknown data set {name!r}.{hint} Known data sets: {', '.join(known)}.")


def default_binarization(name: str, binarize: str | None = "auto") -> str | None:
    """The binarization to load ``name`` with for a binary model: ``binarize`` itself
    unless it is ``"auto"`` (or ``None``); then the set as stored when it is binary
    (``fixed``), and dynamic binarization (Bernoulli samples of the grey levels, re-drawn
    every epoch) for grey-level sets. ``"none"``: the grey levels as stored (for models with
    a continuous observation, such as a Gaussian decoder)."""
    if binarize == "none":
        return None
    if binarize not in (None, "auto"):
        return binarize
    return None if get_spec(name).binarization == "fixed" else "dynamic"
