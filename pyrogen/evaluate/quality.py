r"""Sample quality without outside weights: a Fréchet distance in the feature space of a
classifier that pyrogen trains itself.

Fit a Gaussian to the features of each of two sets of examples, :math:`\mathcal N(\mu_1,
\Sigma_1)` to the generated samples and :math:`\mathcal N(\mu_2, \Sigma_2)` to the reference
data, and report the squared 2-Wasserstein (Fréchet) distance between the two Gaussians [1, 2],

.. math::

    d^2 = \lVert \mu_1 - \mu_2 \rVert^2
        + \mathrm{Tr}\big(\Sigma_1 + \Sigma_2 - 2\,(\Sigma_1 \Sigma_2)^{1/2}\big).

:math:`\Sigma_1 \Sigma_2` is not symmetric, and a general matrix square root of it (what a
naive ``sqrtm`` computes) is slow and can return complex round-off or fail on the singular
covariances that rectified features give. The trace only needs the eigenvalues: with
:math:`A = \Sigma_1^{1/2}` (symmetric, from an eigendecomposition of :math:`\Sigma_1`),
:math:`\Sigma_1 \Sigma_2 = A^{-1} (A \Sigma_2 A) A` is similar to the symmetric positive
semi-definite :math:`A \Sigma_2 A`, so

.. math::

    \mathrm{Tr}(\Sigma_1 \Sigma_2)^{1/2} = \sum_i \sqrt{\lambda_i(A\,\Sigma_2 A)},

computed with two symmetric eigendecompositions in float64 (eigenvalues that round-off
makes slightly negative are clipped at zero, and so is the distance).

The features are those of a small convolutional classifier (:class:`FeatureClassifier`)
trained by :func:`feature_classifier` on the MNIST training split; its test accuracy is stored
with it (:attr:`FeatureClassifier.test_accuracy`: 0.979 on the 10,000 test images after the
default two epochs, seed 0). :func:`mnist_frechet_distance` scores MNIST-like 28 x 28 samples
against the MNIST test set. For scale, with that classifier: 10,000 training images score
1.1 against the test set (4.6 with 1,000 of them: the small-sample bias), the same images
binarized 13.4, uniform noise 668.

.. warning::

    This is **not** the Fréchet Inception Distance (FID) of [2]: the features come from
    pyrogen's own MNIST classifier, not from the Inception network, so the numbers are **not
    comparable with published FIDs** (nor between classifiers trained with other settings).
    They rank models on the same data against the same reference set with the same
    classifier. The estimate is biased upwards for small sample sizes (it is a plug-in
    estimate from sample covariances); compare models at equal numbers of samples.

For a two-sample test of the same two sets see :func:`pyrogen.infer.mmd_test`.

**References**

[1] The Fréchet distance between multivariate normal distributions. D. C. Dowson,
    B. V. Landau. Journal of Multivariate Analysis 12(3), 1982.

[2] GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium.
    Martin Heusel, Hubert Ramsauer, Thomas Unterthiner, Bernhard Nessler, Sepp Hochreiter.
    NIPS 2017.

[3] Gradient-based learning applied to document recognition. Yann LeCun, Léon Bottou,
    Yoshua Bengio, Patrick Haffner. Proceedings of the IEEE 86(11), 1998.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FeatureClassifier",
    "classifier_accuracy",
    "default_classifier_dir",
    "feature_classifier",
    "frechet_distance",
    "frechet_distance_gaussian",
    "gaussian_statistics",
    "mnist_frechet_distance",
    "train_feature_classifier",
]


# ---- the distance ------------------------------------------------------------------------


def _as_matrix(x: object, name: str, min_rows: int = 2) -> torch.Tensor:
    """``x`` as a float64 ``(n, d)`` tensor with ``n >= min_rows`` and finite entries."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor or array, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (n, d) array of features, got {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(
            f"{name}: need at least {min_rows} examples to fit a covariance, got {x.shape[0]}"
        )
    x = x.detach().to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean :math:`\mu` and unbiased covariance :math:`\Sigma` (divisor :math:`n - 1`) of the
    rows of ``features`` ``(n, d)``, in float64."""
    x = _as_matrix(features, "features")
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance_gaussian(
    mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor, cov2: torch.Tensor
) -> float:
    r"""The squared Fréchet distance :math:`d^2` (module docs) between
    :math:`\mathcal N(\mu_1, \Sigma_1)` and :math:`\mathcal N(\mu_2, \Sigma_2)`, in float64.

    :param mean1: ``(d,)`` mean :math:`\mu_1`.
    :param cov1: ``(d, d)`` symmetric positive semi-definite covariance :math:`\Sigma_1`.
    :param mean2: ``(d,)`` mean :math:`\mu_2`.
    :param cov2: ``(d, d)`` covariance :math:`\Sigma_2`.
    """
    tensors = {}
    for name, value, dim in (
        ("mean1", mean1, 1),
        ("cov1", cov1, 2),
        ("mean2", mean2, 1),
        ("cov2", cov2, 2),
    ):
        value = torch.as_tensor(value).detach().to(torch.float64)
        if value.dim() != dim:
            raise ValueError(f"{name}: expected a {dim}-D tensor, got shape {tuple(value.shape)}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name}: contains NaN or infinite values")
        tensors[name] = value
    m1, c1, m2, c2 = tensors["mean1"], tensors["cov1"], tensors["mean2"], tensors["cov2"]
    d = m1.shape[0]
    for name, value, shape in (("cov1", c1, (d, d)), ("mean2", m2, (d,)), ("cov2", c2, (d, d))):
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{name}: expected shape {shape} to match mean1 of size {d}, "
                f"got {tuple(value.shape)}"
            )
    # symmetrise against round-off before the eigendecompositions
    c1, c2 = (c1 + c1.T) / 2, (c2 + c2.T) / 2
    root1 = _psd_sqrt(c1)
    middle = root1 @ c2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (m1 - m2).pow(2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * trace_sqrt
    return max(float(value), 0.0)


def _features(x: object, features: Callable | None, name: str, batch_size: int) -> torch.Tensor:
    if features is None:
        return _as_matrix(x, name)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor or array, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] < 2:
        raise ValueError(
            f"{name}: need at least 2 examples to fit a covariance, got shape {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    # a module, or a bound method of one (e.g. FeatureClassifier.features): eval mode
    module = getattr(features, "__self__", features)
    module = module if isinstance(module, nn.Module) else None
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    try:
        with torch.no_grad():
            out = torch.cat([features(chunk) for chunk in x.split(batch_size)])
    finally:
        if was_training:
            module.train()
    return _as_matrix(out.reshape(out.shape[0], -1), f"features({name})")


def frechet_distance(
    samples: torch.Tensor,
    reference: torch.Tensor,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    batch_size: int = 1000,
) -> float:
    r"""The squared Fréchet distance (module docs) between Gaussians fitted to the features of
    ``samples`` and of ``reference``.

    :param samples: ``(n, ...)`` generated examples (``n >= 2``); ``(n, d)`` features when
        ``features`` is ``None``.
    :param reference: ``(m, ...)`` reference examples, e.g. test data (``m >= 2``).
    :param features: a function or module ``(b, ...) -> (b, d)`` applied in batches without
        gradients (a module in eval mode, its mode restored afterwards), e.g. a
        :class:`FeatureClassifier`; ``None`` (default): the inputs are features already.
    :param int batch_size: examples per call of ``features``.
    :returns: :math:`d^2 \ge 0` as a float; 0 for identical sets, symmetric in its two sets,
        invariant to a common translation or rotation of the feature space.
    :raises ValueError: fewer than 2 examples, NaN or infinite values, or feature sizes that
        differ (the message names the argument).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    a = _features(samples, features, "samples", int(batch_size))
    b = _features(reference, features, "reference", int(batch_size))
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"reference: expected {a.shape[1]} features per example as in samples, got {b.shape[1]}"
        )
    return frechet_distance_gaussian(*gaussian_statistics(a), *gaussian_statistics(b))


# ---- the feature network -------------------------------------------------------------------


class FeatureClassifier(nn.Module):
    r"""A small LeNet-style convolutional classifier [3] whose penultimate layer gives the
    features of the Fréchet distance.

    Two blocks of (3 x 3 convolution, ReLU, 2 x 2 max-pooling) with ``channels`` maps, then a
    fully connected ReLU layer of ``feature_dim`` units (the features) and a linear layer to
    the class logits.

    :param image_shape: ``(H, W)``, both divisible by 4 (28 x 28 for MNIST, 8 x 8 for
        scikit-learn's digits).
    :param int num_classes: number of classes.
    :param channels: feature maps of the two convolutions.
    :param int feature_dim: size of the feature layer.

    Inputs may be ``(B, H * W)``, ``(B, H, W)`` or ``(B, 1, H, W)``. :attr:`test_accuracy`
    holds the held-out accuracy measured by :func:`feature_classifier` (NaN when unknown).
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32),
        feature_dim: int = 64,
    ) -> None:
        super().__init__()
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 2 or any(s < 4 or s % 4 for s in image_shape):
            raise ValueError(
                f"image_shape: expected (H, W) with both divisible by 4, got {image_shape}"
            )
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        c1, c2 = (int(c) for c in channels)
        self.image_shape = image_shape
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.hidden = nn.Linear(c2 * (image_shape[0] // 4) * (image_shape[1] // 4), feature_dim)
        self.out = nn.Linear(feature_dim, int(num_classes))
        #: held-out accuracy stated by :func:`feature_classifier` (NaN when not measured)
        self.test_accuracy = float("nan")

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.image_shape
        if x.dim() == 2 and x.shape[1] == h * w:
            return x.reshape(-1, 1, h, w)
        if x.dim() == 3 and tuple(x.shape[1:]) == (h, w):
            return x.unsqueeze(1)
        if x.dim() == 4 and tuple(x.shape[1:]) == (1, h, w):
            return x
        raise ValueError(
            f"x: expected shape (B, {h * w}), (B, {h}, {w}) or (B, 1, {h}, {w}), "
            f"got {tuple(x.shape)}"
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, feature_dim)`` penultimate-layer activations of images ``x``."""
        h = F.max_pool2d(F.relu(self.conv1(self._images(x))), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.hidden(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, num_classes)`` class logits."""
        return self.out(self.features(x))


def classifier_accuracy(
    classifier: FeatureClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 1000,
) -> float:
    """Fraction of ``images`` whose most probable class is ``labels`` (eval mode, no
    gradients; the module's mode is restored)."""
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels: expected shape ({images.shape[0]},) to match images, got "
            f"{tuple(labels.shape)}"
        )
    mode = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            pred = torch.cat([classifier(x).argmax(-1) for x in images.split(batch_size)])
    finally:
        classifier.train(mode)
    return float((pred == labels.to(pred.device)).double().mean())


def train_feature_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    image_shape: Sequence[int],
    num_classes: int = 10,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    channels: Sequence[int] = (16, 32),
    feature_dim: int = 64,
) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` by Adam on the cross-entropy of ``labels``.

    :param images: ``(N, H * W)`` (or image-shaped) training images.
    :param labels: ``(N,)`` integer classes in ``[0, num_classes)``.
    :param int epochs: passes over the data, each in a fresh order.
    :param int seed: seeds the initialisation and the order; the caller's global RNG is left
        as it was.
    :returns: the trained classifier, in eval mode.
    """
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        raise ValueError(f"images: expected a (N, ...) tensor, got {type(images).__name__}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images: contains NaN or infinite values")
    labels = torch.as_tensor(labels).long()
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels: expected shape ({images.shape[0]},), got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels: expected classes in [0, {num_classes}), got other values")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureClassifier(image_shape, num_classes, channels, feature_dim)
        net.to(images.device)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        order_rng = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(int(epochs)):
            order = torch.randperm(images.shape[0], generator=order_rng).to(images.device)
            for idx in order.split(int(batch_size)):
                loss = F.cross_entropy(net(images[idx].float()), labels[idx].to(images.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return net.eval()


def default_classifier_dir() -> Path:
    """Where :func:`feature_classifier` caches trained classifiers:
    ``$PYROGEN_CLASSIFIER_DIR`` when set, else ``quality/`` in pyrogen's cache folder
    (``$XDG_CACHE_HOME/pyrogen/quality``, by default ``~/.cache/pyrogen/quality``)."""
    env = os.environ.get("PYROGEN_CLASSIFIER_DIR")
    if env:
        return Path(env).expanduser().absolute()
    from pyrogen.data import cache_dir

    return cache_dir() / "quality"


def save_atomically(state: dict, path: Path) -> None:
    """``torch.save(state, path)`` without ever leaving a partial file at ``path``: written
    to a temporary file beside it (its folder created when missing), then moved into place
    with :func:`os.replace`. How the cached classifiers (:func:`feature_classifier`,
    :func:`~pyrogen.models.caption_fidelity.caption_classifier`) are written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def feature_classifier(
    dataset: str = "mnist",
    *,
    root: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    retrain: bool = False,
    verbose: bool = False,
) -> FeatureClassifier:
    """The feature classifier of ``dataset``, trained on its ``"train"`` split and scored on
    its ``"test"`` split, loaded from the cache when it is there.

    :param str dataset: a labelled data set of :func:`pyrogen.data.load` (``"mnist"``;
        ``"digits"`` gives a tiny 8 x 8 one for tests and demos).
    :param root: data folder passed to :func:`pyrogen.data.load`.
    :param cache: folder of the cached classifiers (default :func:`default_classifier_dir`);
        the file ``<dataset>_classifier_e<epochs>_b<batch_size>_lr<lr>_s<seed>.pt`` holds the
        weights, the settings and the test accuracy, written atomically.
    :param int epochs: training epochs (default 2).
    :param int batch_size: training batch size (default 128).
    :param float lr: Adam's learning rate (default 0.001).
    :param int seed: seed of the initialisation and the data order.
    :param bool retrain: train even when a cached classifier exists (and overwrite it).
    :param bool verbose: print the test accuracy after training.
    :returns: the classifier in eval mode, its test accuracy in
        :attr:`FeatureClassifier.test_accuracy`.
    """
    from pyrogen.data import load

    folder = Path(cache).expanduser() if cache is not None else default_classifier_dir()
    name = f"{dataset}_classifier_e{int(epochs)}_b{int(batch_size)}_lr{lr:g}_s{int(seed)}.pt"
    path = folder / name
    if path.exists() and not retrain:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net = FeatureClassifier(**state["config"])
        net.load_state_dict(state["state_dict"])
        net.test_accuracy = float(state["test_accuracy"])
        return net.eval()
    train = load(dataset, "train", root)
    test = load(dataset, "test", root)
    if train.labels is None or test.labels is None:
        raise ValueError(f"dataset: {dataset!r} has no labels to train a classifier on")
    num_classes = int(train.labels.max()) + 1
    config = {"image_shape": tuple(train.image_shape), "num_classes": num_classes}
    net = train_feature_classifier(
        train.data, train.labels, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, **config
    )
    net.test_accuracy = classifier_accuracy(net, test.data, test.labels)
    if verbose:
        print(
            f"{dataset} feature classifier: test accuracy {net.test_accuracy:.4f} "
            f"({len(test)} test images, {epochs} epochs on {len(train)}), saved to {path}"
        )
    save_atomically(
        {
            "state_dict": net.state_dict(),
            "config": {**config, "image_shape": list(config["image_shape"])},
            "test_accuracy": net.test_accuracy,
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "lr": float(lr),
            "seed": int(seed),
            "train_size": len(train),
        },
        path,
    )
    return net


def mnist_frechet_distance(
    samples: torch.Tensor,
    reference: torch.Tensor | None = None,
    *,
    classifier: FeatureClassifier | None = None,
    root: str | os.PathLike | None = None,
    batch_size: int = 1000,
) -> float:
    r"""The Fréchet distance of MNIST-like 28 x 28 ``samples`` in the feature space of
    pyrogen's MNIST classifier (not the Inception FID; see the module's warning).

    :param samples: ``(n, 784)``, ``(n, 28, 28)`` or ``(n, 1, 28, 28)`` images with values
        in about ``[0, 1]``.
    :param reference: images of the same shapes (default: the 10,000 grey-level images of
        the MNIST test split). Score binary samples against binarized references, so that
        the distance measures the model and not the binarization.
    :param classifier: the feature network (default :func:`feature_classifier`, trained on
        first use and cached).
    :param root: data folder for the test split and the classifier's training data.
    """
    if classifier is None:
        classifier = feature_classifier("mnist", root=root)
    if reference is None:
        from pyrogen.data import load

        reference = load("mnist", "test", root).data
    for name, value in (("samples", samples), ("reference", reference)):
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            size = math.prod(value.shape[1:])
            if size != 784:
                raise ValueError(
                    f"{name}: expected 28 x 28 images (784 values per example), got shape "
                    f"{tuple(value.shape)}"
                )
    return frechet_distance(samples, reference, classifier.features, batch_size=batch_size)
