"""Deep autoencoder against PCA on 25x25 faces of held-out people (Hinton & Salakhutdinov 2006).

Data (:mod:`pyrogen.data.faces`): the Olivetti faces, the first 30 people for training and
the other 10 for testing, as in the paper. Like the paper's face set, the images are random
geometric variants of the originals (rotation up to 90 degrees either way, zoom 1.4-2.0,
shifts of up to a pixel, left-right flips), area-averaged to 25x25, pixels in [0, 1]. The
paper made a fixed set of 124,200 training images from the 300 training faces; here every
training batch holds fresh variants (:class:`~pyrogen.data.AugmentedFaces`; an epoch is
``--augment`` variants of each face, 12,000 images by default), so the network never sees
an image twice. (On a fixed set of 12,000 images the deep network memorises poses: its
error on new variants of the training people was 1.76 against 1.32 on the set itself.)
Test sets: ``--test-augment`` fixed variants of each held-out face (another seed; the
primary test set, the paper's protocol), and the 100 untransformed held-out faces (a shift
of distribution for both models: no training image is unzoomed).

Models, both with a 30-dimensional code:

* **PCA**: the top 30 principal directions of ``--pca-copies`` variants of each training
  face (414: 124,200 images, the size of the paper's training set) plus their mean; also
  PCA of the 300 untransformed training faces, for reference;
* **deep autoencoder** 625-2000-1000-500-30 (linear code, squared error) from the
  ``autoencoder`` registry entry, built, trained (Adam; the paper used conjugate gradients)
  and scored through :class:`pyrogen.runs.Run`, as ``pyrogen train autoencoder`` and
  ``pyrogen evaluate`` do. Two recipes:

  - ``--recipe tanh`` (default): tanh hidden units, Glorot initialisation, no
    pre-training;
  - ``--recipe hs`` (the paper's): logistic hidden units, greedy RBM pre-training (Gaussian
    visible units of standard deviation 0.3 on standardized pixels, a linear-hidden top
    RBM, CD-1, SGD), unrolled, then fine-tuned.

  The learning rate is ``--lr`` for the first half of the fine-tuning epochs, a third of it
  for the next quarter and a tenth for the last quarter. Inputs are standardized with the
  training statistics (per-pixel mean removed, divided by one global standard deviation,
  so squared errors are those of the [0, 1] pixels times a constant).

Reported: the squared reconstruction error per image (sum over the 625 pixels, in [0, 1]
units, averaged over the images), side by side; the epochs; wall time; machine load.
Acceptance: the deep autoencoder's error on the transformed held-out faces is lower than
PCA's. ``--quick`` is a smoke run (tiny budget, no acceptance).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results  # noqa: E402

from pyrogen.data import AugmentedFaces, olivetti_faces  # noqa: E402
from pyrogen.registry import DataInfo  # noqa: E402
from pyrogen.runs import Run, RunConfig  # noqa: E402

RECIPES = {
    "hs": {"activation": "sigmoid", "pretrain": "rbm"},
    "tanh": {"activation": "tanh", "pretrain": "none"},
}


def fit_pca(chunks, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and top-``k`` principal directions (``(D, k)``, eigenvectors of the covariance,
    float64) of the images in ``chunks`` (an iterable of ``(n, D)`` tensors)."""
    n, total, outer = 0, 0.0, 0.0
    for chunk in chunks:
        chunk = chunk.double()
        n += chunk.shape[0]
        total = total + chunk.sum(0)
        outer = outer + chunk.T @ chunk
    mean = total / n
    cov = outer / n - torch.outer(mean, mean)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    return mean, vectors[:, -k:]


def pca_error(pca: tuple[torch.Tensor, torch.Tensor], test_x: torch.Tensor) -> float:
    """Squared error per image of reconstructing ``test_x`` from its projection on the
    principal directions of ``pca = (mean, basis)``."""
    mean, basis = pca
    test_x = test_x.double()
    recon = (test_x - mean) @ basis @ basis.T + mean
    return float((recon - test_x).square().sum(-1).mean())


def step_schedule(lr: float, start: int, epochs: int):
    """``epoch -> lr``: ``lr`` for the first half of the ``epochs`` fine-tuning epochs
    (which begin at ``start``), ``lr / 3`` for the next quarter, ``lr / 10`` after."""

    def schedule(epoch: int) -> float:
        e = epoch - start
        if e < epochs / 2:
            return lr
        return lr / 3 if e < 3 * epochs / 4 else lr / 10

    return schedule


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budget")
    parser.add_argument("--recipe", default="tanh", choices=sorted(RECIPES), help="see docs")
    parser.add_argument(
        "--augment", type=int, default=40, help="fresh variants of each training face per epoch"
    )
    parser.add_argument(
        "--pca-copies", type=int, default=414, help="variants per face PCA is fitted to"
    )
    parser.add_argument("--test-augment", type=int, default=10, help="copies per test face")
    parser.add_argument("--hidden", default="2000,1000,500,30", help="layer widths, code last")
    parser.add_argument("--pretrain-epochs", type=int, default=3, help="RBM epochs per layer")
    parser.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs")
    parser.add_argument("--lr", type=float, default=1e-3, help="initial Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per step")
    parser.add_argument("--rbm-sigma", type=float, default=0.3, help="first RBM's visible std")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and shuffling")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.quick:
        args.augment, args.test_augment, args.pca_copies = 1, 1, 2
        args.pretrain_epochs, args.epochs = 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = RECIPES[args.recipe]
    load_before = os.getloadavg()
    start = time.perf_counter()

    train_set = AugmentedFaces("train", size=25, copies=args.augment)
    test_sets = {
        "transformed test faces": olivetti_faces(
            "test", augment=args.test_augment, augment_seed=1
        ).data,
        "original test faces": olivetti_faces("test").data,
    }
    train_orig = olivetti_faces("train").data
    x = train_set.sample(args.augment, seed=0)  # one epoch's worth, for statistics
    mean, scale = x.mean(0), x.std()

    def standardize(v):
        return (v - mean) / scale

    train_set.transform = standardize
    overrides = {
        "kind": "deep",
        "hidden": args.hidden,
        "activation": recipe["activation"],
        "output": "gaussian",
        "pretrain": recipe["pretrain"],
        "pretrain_epochs": args.pretrain_epochs,
        "rbm_sigma": args.rbm_sigma,
    }
    layers = len(args.hidden.split(","))  # one pre-training stage per layer
    pre_epochs = args.pretrain_epochs * layers if recipe["pretrain"] != "none" else 0
    run = Run(
        RunConfig(
            "autoencoder",
            overrides,
            dataset="olivetti",
            epochs=pre_epochs + args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            validate=False,
        ),
        info=DataInfo(x.shape[1], (25, 25), None, "olivetti"),
    )
    code = run.model_config.sizes()[-1]
    chunks = (train_set.sample(1, seed=2 + c) for c in range(args.pca_copies))
    pca_fit = fit_pca(chunks, code)
    pca_orig_fit = fit_pca([train_orig], code)
    pca = {name: pca_error(pca_fit, t) for name, t in test_sets.items()}
    pca_orig = {name: pca_error(pca_orig_fit, t) for name, t in test_sets.items()}
    pca_train = pca_error(pca_fit, x)

    ae = run.build()  # seeded by args.seed
    marks = {}
    if pre_epochs:  # time pre-training: note when the fine-tuning stage starts
        finetune = next(stage for stage in run.learner.stages if stage.name == "finetune")
        load = finetune.on_enter

        def enter_finetune():
            marks["finetune"] = time.perf_counter()
            load()

        finetune.on_enter = enter_finetune
    train_start = time.perf_counter()
    result = run.train(
        train_data=train_set,
        progress=False,
        lr_schedule=step_schedule(args.lr, pre_epochs, args.epochs),
    )
    train_end = time.perf_counter()
    pretrain_s = marks.get("finetune", train_start) - train_start
    finetune_s = train_end - marks.get("finetune", train_start)

    def error(images):
        """Squared error per image in [0, 1] pixel units, by the evaluation protocol (the
        autoencoder's reconstruction of the standardized images; one global scale, so the
        squared error scales by its square)."""
        score = run.evaluate(standardize(images))
        return score.squared_error * float(scale) ** 2

    deep = {name: error(t) for name, t in test_sets.items()}
    train_error = error(x)
    primary = "transformed test faces"
    accepted = deep[primary] < pca[primary]
    total = time.perf_counter() - start
    load_after = os.getloadavg()

    arch = "-".join(map(str, ae.sizes))
    if pre_epochs:
        recipe_text = (
            f"logistic units, RBM pre-training {args.pretrain_epochs} epochs per layer "
            f"({pretrain_s:.0f} s), then"
        )
    else:
        recipe_text = f"{recipe['activation']} units, Glorot initialisation, no pre-training;"
    rows = [
        [f"{name} ({t.shape[0]})", deep[name], pca[name], pca_orig[name]]
        for name, t in test_sets.items()
    ]
    rows.append([f"training variants ({x.shape[0]})", train_error, pca_train, "-"])
    header = [
        "images (count)",
        f"deep AE {arch}",
        f"PCA-{code} (training variants)",
        f"PCA-{code} (300 untransformed faces)",
    ]
    title = (
        "Squared reconstruction error per image (sum over 625 pixels in [0, 1], mean over "
        "images) of 25x25 Olivetti faces of the 10 held-out people; trained on the 30 other "
        f"people: {x.shape[0]} fresh random rotated/zoomed/shifted/flipped variants per epoch "
        f"({args.augment} of each face); PCA fitted to {args.pca_copies * 300} variants. "
        f"Deep autoencoder: {recipe_text} "
        f"{args.epochs} epochs of Adam (lr {args.lr}, then /3 and /10; batch "
        f"{args.batch_size}; {finetune_s:.0f} s); {result.step} steps in all. Total wall time "
        f"{total:.0f} s on {torch.get_num_threads()} torch threads; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after."
    )
    verdict = (
        "Acceptance (deep AE below PCA on the transformed held-out faces): "
        f"{'met' if accepted else 'NOT met'} ({deep[primary]:.3f} vs {pca[primary]:.3f})."
    )
    if args.quick:
        verdict = "Quick smoke run, no acceptance. " + verdict
    table = title + "\n\n" + markdown_table(header, rows) + "\n\n" + verdict
    print(table)
    record = {
        "quick": args.quick,
        "args": vars(args),
        "recipe": recipe,
        "architecture": list(ae.sizes),
        "train_images": x.shape[0],
        "test_images": {k: v.shape[0] for k, v in test_sets.items()},
        "deep_autoencoder": deep,
        "deep_autoencoder_train": train_error,
        "pca_same_train": pca,
        "pca_train": pca_train,
        "pca_original_train": pca_orig,
        "accepted": bool(accepted),
        "steps": result.step,
        "pretrain_seconds": pretrain_s,
        "finetune_seconds": finetune_s,
        "total_seconds": total,
        "load_average": {"before": load_before, "after": load_after},
        "machine": machine(),
    }
    name = "faces_quick" if args.quick else f"faces_{args.recipe}"
    js, md = write_results(name, record, table)
    print(f"wrote {js} and {md}")
    return 0 if accepted or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
