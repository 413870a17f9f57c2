"""Convolutional deep belief networks (Lee, Grosse, Ranganath & Ng 2009): training time per
layer, and linear classification with CDBN features.

Three parts, all on CPU with ``--threads`` torch threads (1 by default):

1. **Natural images.** Layer 1: a Gaussian convolutional RBM (24 filters of 10x10,
   probabilistic max-pooling 2x2, sparsity target 0.003, hidden biases starting at -1) on
   63x63 patches of the natural images of Hyvarinen et al. at half resolution (2x2 area
   averages), each image whitened whole by the 1/f filter of Olshausen & Field
   (:func:`pyrogen.models.cdbn.whitened_patches`) and the patches scaled to standard
   deviation 3 (a visible noise of a third of the data's spread, see
   :class:`pyrogen.models.cdbn.ConvRBMLearner`), the noise annealed from twice that
   (``anneal_from=0.5``); batches of 2 patches, as Lee et al. take one image per step.
   Layer 2: 40 binary-visible filters of 8x8 over the 24 pooled maps, pooling 2, sparsity
   target 0.02, learning rate 0.1 without weight decay.
2. **Faces.** As in Lee et al., layer 1 is the natural-image layer; layer 2 (the same
   specification) trains on its pooling probabilities of the 400 Olivetti faces (64x64,
   whitened the same way, cropped to 63x63). Its filters drawn in the input space (24x24
   pixels) are the part pictures of the paper.
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

Budget: the full run is sized to about 20 minutes of one CPU thread (MNIST: 3,000 training
images, Caltech-101 Silhouettes: its 4,100; 3 epochs per layer; natural images: 600 patches,
16 epochs for layer 1, 2 for layer 2; faces: 30 epochs for layer 2); ``--smoke`` takes
seconds and is what the tests run.
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
from pyrogen.data.patches import load_natural_images  # noqa: E402
from pyrogen.models.cdbn import (  # noqa: E402
    ConvolutionalDBN,
    ConvRBMLearner,
    filter_images,
    whitened_patches,
)
from pyrogen.train import train  # noqa: E402

#: the standard deviation whitened images are scaled to (unit-variance Gaussian units)
DATA_STD = 3.0
#: the side of natural-image patches and of the (cropped) Olivetti faces
SIDE = 63
NATURAL_LAYERS = [
    dict(
        filters=24,
        filter_size=10,
        pooling=2,
        visible_units="gaussian",
        sparsity_target=0.003,
        sparsity_cost=5.0,
        init_scale=0.01,
        init_hidden_bias=-1.0,
    ),
    dict(
        filters=40,
        filter_size=8,
        pooling=2,
        sparsity_target=0.02,
        sparsity_cost=3.0,
        init_scale=0.1,
        init_hidden_bias=-2.0,
    ),
]
DIGIT_LAYERS = [
    dict(
        filters=16,
        filter_size=7,
        pooling=2,
        sparsity_target=0.02,
        sparsity_cost=3.0,
        init_scale=0.01,
        init_hidden_bias=-2.0,
    ),
    dict(
        filters=40,
        filter_size=4,
        pooling=2,
        sparsity_target=0.02,
        sparsity_cost=3.0,
        init_scale=0.01,
        init_hidden_bias=-2.0,
    ),
]
#: learning rates of the Gaussian first layer and of binary-visible layers (digits)
GAUSSIAN_LR, BINARY_LR = 0.05, 0.3
#: learning rate and weight decay of layer 2 above the natural-image layer (natural images,
#: faces): at 0.3 with weight decay 0.01 every unit collapsed onto one blob template
PARTS_BINARY = (0.1, 0.0)
#: the natural images are area-averaged over 2x2 blocks before whitening
NATURAL_DOWNSAMPLE = 2
#: the Gaussian layer's data scale starts at this fraction (visible noise annealed)
ANNEAL_FROM = 0.5
MNIST_TRAIN = 3000
#: epochs of (layer 1, layer 2) on natural-image patches and on faces (layer 1 not retrained)
NATURAL_EPOCHS, FACE_EPOCHS = (16, 2), (1, 30)


def whitened_natural_patches(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` patches of ``size`` x ``size`` of the natural images at half resolution,
    whitened whole (:func:`~pyrogen.models.cdbn.whitened_patches`, downsample
    :data:`NATURAL_DOWNSAMPLE`) and scaled to standard deviation :data:`DATA_STD`."""
    images, _ = load_natural_images()
    return whitened_patches(images, n, size, downsample=NATURAL_DOWNSAMPLE, std=DATA_STD, seed=seed)


def whitened_faces(size: int) -> torch.Tensor:
    """The 400 Olivetti faces at 64 x 64, whitened whole, cropped to ``size`` x ``size``
    and scaled to standard deviation :data:`DATA_STD`
    (:func:`~pyrogen.models.cdbn.whitened_patches` with ``num=None``)."""
    x = olivetti_faces("all", size=64).data.reshape(-1, 64, 64)
    return whitened_patches(list(x), None, size, std=DATA_STD)


def train_cdbn(
    data,
    shape,
    layers,
    epochs,
    batch_sizes=(20, 20),
    seed=0,
    first=None,
    binary=(BINARY_LR, 0.01),
):
    """A :class:`ConvolutionalDBN` trained greedily, ``epochs[k]`` epochs with batches of
    ``batch_sizes[k]`` for layer ``k``; with ``first`` (a trained first layer of the same
    shape), layer 1 is copied from it and not trained (Lee et al. train the face layers
    above the natural-image layer 1). A Gaussian layer trains at :data:`GAUSSIAN_LR` with its
    visible noise annealed (``anneal_from`` :data:`ANNEAL_FROM` over all its steps); binary
    layers at ``binary`` = (learning rate, weight decay), their visible biases set from
    their inputs first (:meth:`~pyrogen.models.cdbn.ConvRBMLayer.init_visible_bias`).
    Returns the CDBN and, per trained layer, its seconds and final training numbers."""
    torch.manual_seed(seed)
    cdbn = ConvolutionalDBN(shape, layers)
    if first is not None:
        cdbn.layers[0].load_state_dict(first.state_dict())

    def learner_for(k, layer):
        steps = -(-data.shape[0] // batch_sizes[k])
        if layer.visible_units == "gaussian":
            return ConvRBMLearner(
                layer,
                lr=GAUSSIAN_LR,
                warmup_steps=steps,
                anneal_from=ANNEAL_FROM,
                anneal_steps=steps * epochs[k],
            )
        lr, decay = binary
        return ConvRBMLearner(layer, lr=lr, weight_decay=decay, warmup_steps=steps)

    stages = cdbn.stages(learner_for, epochs=1)
    report = []
    for k, (name, learner, _, prepare) in enumerate(stages):
        if k == 0 and first is not None:
            continue
        x = prepare(data) if prepare is not None else data
        if learner.layer.visible_units == "binary":
            learner.layer.init_visible_bias(x)
        start = time.perf_counter()
        result = train(
            learner,
            x,
            epochs=epochs[k],
            batch_size=batch_sizes[k],
            seed=seed + k,
            progress=False,
        )
        seconds = time.perf_counter() - start
        final = learner.evaluate(x[:200])
        report.append(
            {
                "layer": name,
                "input_shape": list(learner.layer.input_shape),
                "examples": int(x.shape[0]),
                "epochs": epochs[k],
                "seconds": seconds,
                "recon_error": float(final["recon_error"]),
                "input_variance": float(x[:200].var()),
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

    # 1-2: natural images, then faces above the natural-image layer 1
    natural = whitened_natural_patches(40 if smoke else 600, SIDE)
    faces = whitened_faces(SIDE)[: 20 if smoke else None]
    first = None
    for name, data, epochs, batches in (
        ("natural images", natural, (1, 1) if smoke else NATURAL_EPOCHS, (2, 10)),
        ("Olivetti faces", faces, (1, 1) if smoke else FACE_EPOCHS, (2, 10)),
    ):
        cdbn, report = train_cdbn(
            data,
            (1, SIDE, SIDE),
            NATURAL_LAYERS,
            epochs,
            batches,
            first=first,
            binary=PARTS_BINARY,
        )
        first = cdbn.layers[0]
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
        cdbn, report = train_cdbn(xtr, (1, 28, 28), DIGIT_LAYERS, (1, 1) if smoke else (3, 3))
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
