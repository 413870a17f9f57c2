"""Convolutional deep belief networks (Lee, Grosse, Ranganath & Ng 2009): training time per
layer, and linear classification with CDBN features.

Three parts, all on CPU with ``--threads`` torch threads (1 by default):

1. **Natural images.** Layer 1: a Gaussian convolutional RBM (24 filters of 10x10,
   probabilistic max-pooling 2x2, sparsity target 0.003) on ZCA-whitened patches of the
   natural images of Hyvarinen et al. (``pyrogen.data.natural_image_patches``, whitening
   regulariser ``eps=1``: a mild low-pass), scaled to standard deviation 3 (a visible noise
   of a third of the data's spread, see :class:`pyrogen.models.cdbn.ConvRBMLearner`).
   Layer 2: 40 binary-visible filters of 5x5 over the 24 pooled maps.
2. **Faces.** The same two-layer recipe on the 400 Olivetti faces at 33x33 (ZCA-whitened
   over the images, the same scaling); the layer-2 filters drawn in the input space are
   the part pictures of the paper.
3. **Classification.** A two-layer CDBN with binary visible units (16 filters of 7x7,
   pooling 2; 40 filters of 4x4, pooling 2) trained without labels on the training images
   of MNIST and of Caltech-101 Silhouettes; the pooling probabilities of both layers,
   concatenated, are the features of the logistic regression of ``benchmarks/features.py``
   (its ``load_sets`` splits and its ``linear_accuracy``: C chosen on validation), with the
   raw pixels beside them for reference.

Every layer trains by :class:`pyrogen.models.cdbn.ConvRBMLearner` (CD-1, mean-field
reconstructions, Lee et al.'s sparsity rule on the hidden biases), stage by stage (timed)
from :meth:`~pyrogen.models.cdbn.ConvolutionalDBN.stages` (greedy layer-wise).
Reported: seconds per layer and
data set, the final reconstruction error and mean activation of each layer, the test
accuracies. Results go to ``results/conv_dbn.{json,md}`` (``--smoke``:
``conv_dbn_smoke``); ``--figures DIR`` also writes the filter pictures as PNGs.

Budget: the full run is sized to about 10 minutes of one CPU thread (MNIST: 3,000 training
images, Caltech-101 Silhouettes: its 4,100; 2 epochs per layer; natural images: 2,000 patches
of 21x21, 6 epochs for layer 1); ``--smoke`` takes seconds and is what the tests run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import features  # noqa: E402
from _common import machine, markdown_table  # noqa: E402
from features import linear_accuracy, load_sets  # noqa: E402

from pyrogen.data import olivetti_faces  # noqa: E402
from pyrogen.data.patches import natural_image_patches, whitening  # noqa: E402
from pyrogen.models.cdbn import ConvolutionalDBN, ConvRBMLearner, filter_images  # noqa: E402
from pyrogen.train import train  # noqa: E402

#: the standard deviation whitened images are scaled to (unit-variance Gaussian units)
DATA_STD = 3.0
NATURAL_LAYERS = [
    dict(
        filters=24,
        filter_size=10,
        pooling=2,
        visible_units="gaussian",
        sparsity_target=0.003,
        sparsity_cost=50.0,
        init_scale=0.001,
    ),
    dict(filters=40, filter_size=5, pooling=1, sparsity_target=0.01, sparsity_cost=50.0),
]
DIGIT_LAYERS = [
    dict(filters=16, filter_size=7, pooling=2, sparsity_target=0.01, sparsity_cost=50.0),
    dict(filters=40, filter_size=4, pooling=2, sparsity_target=0.01, sparsity_cost=50.0),
]
LAYER_LR = (0.01, 0.05)
MNIST_TRAIN = 3000


def whitened_natural_patches(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """ZCA-whitened natural-image patches (``eps=1``) scaled to standard deviation
    :data:`DATA_STD`."""
    x = natural_image_patches(n, size=size, seed=seed, whiten="zca", eps=1.0)
    return x * (DATA_STD / x.std())


def whitened_faces(size: int) -> torch.Tensor:
    """The 400 Olivetti faces at ``size`` pixels, ZCA-whitened over the images (``eps=1``)
    and scaled to standard deviation :data:`DATA_STD`."""
    x = olivetti_faces("all", size=size).data.float()
    x = x - x.mean(1, keepdim=True)
    w, mean = whitening(x, "zca", eps=1.0)
    x = (x - mean) @ w.T
    return x * (DATA_STD / x.std())


def train_cdbn(data, shape, layers, epochs, batch_size=20, seed=0):
    """A :class:`ConvolutionalDBN` trained greedily, ``epochs[k]`` epochs for layer ``k``;
    returns it and, per layer, its seconds and final training numbers."""
    torch.manual_seed(seed)
    cdbn = ConvolutionalDBN(shape, layers)
    steps = -(-data.shape[0] // batch_size)

    def learner_for(k, layer):
        return ConvRBMLearner(layer, lr=LAYER_LR[min(k, 1)], warmup_steps=2 * steps)

    stages = cdbn.stages(learner_for, epochs=1)
    report = []
    for k, (name, learner, _, prepare) in enumerate(stages):
        x = prepare(data) if prepare is not None else data
        start = time.perf_counter()
        result = train(
            learner, x, epochs=epochs[k], batch_size=batch_size, seed=seed + k, progress=False
        )
        seconds = time.perf_counter() - start
        final = learner.evaluate(x[:500])
        report.append(
            {
                "layer": name,
                "input_shape": list(learner.layer.input_shape),
                "examples": int(x.shape[0]),
                "epochs": epochs[k],
                "seconds": seconds,
                "recon_error": float(final["recon_error"]),
                "input_variance": float(x.var()),
                "activation": float(final["activation"]),
            }
        )
        del result
    return cdbn, report


def save_figures(cdbn, folder, tag) -> list[str]:
    from pyrogen.plotting import save_image_grid

    paths = []
    for k in range(len(cdbn.layers)):
        f = cdbn.filters_in_input_space(k)
        path = Path(folder) / f"{tag}_layer{k + 1}.png"
        save_image_grid(1 - filter_images(f), path, f.shape[-2:], nrow=8, scale=1.0)
        paths.append(str(path))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--figures", default=None, help="folder for filter PNGs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    smoke = args.smoke
    timing, figures = [], []

    # 1-2: natural images and faces
    natural = whitened_natural_patches(60 if smoke else 2000, 21)
    faces = whitened_faces(33)[: 40 if smoke else None]
    for name, data, side, epochs in (
        ("natural images", natural, 21, (1, 1) if smoke else (6, 3)),
        ("Olivetti faces", faces, 33, (1, 1) if smoke else (15, 10)),
    ):
        cdbn, report = train_cdbn(data, (1, side, side), NATURAL_LAYERS, epochs)
        for row in report:
            print(f"  {name:16s} {row}", flush=True)
            timing.append({"data": name, **row})
        if args.figures:
            figures += save_figures(cdbn, args.figures, name.split()[0].lower())

    # 3: classification
    if smoke:  # one regularisation strength instead of features.C_GRID's four
        features.C_GRID = (0.1,)
    sets = load_sets(True if smoke else False, MNIST_TRAIN)
    accuracy = {}
    for name, (xtr, ytr, xva, yva, xte, yte) in sets.items():
        if smoke:
            xtr, ytr, xva, yva, xte, yte = (t[:100] for t in (xtr, ytr, xva, yva, xte, yte))
        cdbn, report = train_cdbn(xtr, (1, 28, 28), DIGIT_LAYERS, (1, 1) if smoke else (2, 2))
        for row in report:
            print(f"  {name:16s} {row}", flush=True)
            timing.append({"data": name, **row})
        if args.figures:
            figures += save_figures(cdbn, args.figures, name.split()[0].lower())
        ys = [y.numpy() for y in (ytr, yva, yte)]
        accuracy[name] = {}
        for row, fn in (("raw pixels", lambda x: x), ("CDBN layers 1+2", cdbn.features)):
            t0 = time.perf_counter()
            feats = [fn(x).double().numpy() for x in (xtr, xva, xte)]
            acc = linear_accuracy(feats[0], ys[0], feats[1], ys[1], feats[2], ys[2])
            acc.update(dim=feats[0].shape[1], seconds=time.perf_counter() - t0)
            accuracy[name][row] = acc
            print(f"  {name:24s} {row:16s} {acc}", flush=True)

    elapsed = time.perf_counter() - start
    m = machine()
    time_rows = [
        [
            r["data"],
            r["layer"],
            "x".join(map(str, r["input_shape"])),
            r["examples"],
            r["epochs"],
            r["seconds"],
            r["recon_error"] / r["input_variance"],
            r["activation"],
        ]
        for r in timing
    ]
    time_table = markdown_table(
        [
            "data",
            "layer",
            "input",
            "examples",
            "epochs",
            "seconds",
            "relative recon error",
            "mean activation",
        ],
        time_rows,
    )
    names = list(accuracy)
    acc_rows = [
        [row] + [accuracy[n][row]["test"] for n in names] + [accuracy[names[0]][row]["dim"]]
        for row in ("raw pixels", "CDBN layers 1+2")
    ]
    acc_table = markdown_table(
        ["features"] + [f"{n} test accuracy" for n in names] + ["feature dim"], acc_rows
    )
    title = (
        f"Convolutional DBN{' (--smoke)' if smoke else ''}: greedy training time per layer "
        f"and linear-classifier test accuracy of its features (logistic regression of "
        f"benchmarks/features.py). CPU ({m['cpu']}, {m['torch_threads']} threads), "
        f"{elapsed:.0f} s in all."
    )
    table = f"{title}\n\n{time_table}\n\n{acc_table}"
    print()
    print(table)
    record = {
        "machine": m,
        "smoke": smoke,
        "timing": timing,
        "accuracy": accuracy,
        "figures": figures,
        "seconds": elapsed,
    }
    js, md = _common.write_results("conv_dbn_smoke" if smoke else "conv_dbn", record, table)
    print(f"\nwrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
