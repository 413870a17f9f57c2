"""Feature quality: linear-classifier test accuracy on features learned without labels.

For each data set the features of every training and test image are computed by an
unsupervised model fitted on the training images alone (labels are never seen), and a linear
classifier is trained on them:

* **raw pixels** (784);
* **PCA**, the top ``--pca`` principal components (``torch.linalg.svd`` of the centred
  training images);
* **sparse coding** (``pyrogen.models.SparseCoding``): a dictionary of ``--atoms`` atoms
  learned on the training images (minus their mean pixel), Lasso codes with the same
  ``alpha`` for train and test, split into positive and negative parts
  ``[max(0, a), max(0, -a)]`` (Coates & Ng 2011; a linear classifier may then weigh the two
  signs differently), so ``2 * atoms`` features;
* **k-means** (``pyrogen.models.KMeansFeatures``): ``--atoms`` centres by k-means++ and
  Lloyd iterations, "triangle" activations ``max(0, mean_k z_k - z_k)`` (Coates, Lee & Ng
  2011);
* **autoencoder** (the ``autoencoder`` family, ``kind="nonlinear"``: an
  ``Autoencoder.nonlinear``): one hidden layer of ``--atoms`` sigmoid units, cross-entropy
  reconstruction (Bernoulli output on the logits), trained with Adam (lr 1e-3, batch 100)
  for ``--ae-epochs`` epochs through :class:`pyrogen.runs.Run`, as ``pyrogen train
  autoencoder`` does; the features are the hidden units.

Classifier: ``sklearn.linear_model.LogisticRegression`` (multinomial, L-BFGS, at most 500
iterations) on standardized features (``StandardScaler`` fitted on the training features).
Its inverse regularisation ``C`` is chosen per row from {0.001, 0.01, 0.1, 1} by accuracy on a
validation set, and the test accuracy of that classifier (trained on the training set only)
is reported.

Data (no labels are used before the classifier):

* **MNIST** grey levels in [0, 1]: the first ``--mnist-train`` training images (default
  10,000) train, images 50,000-54,999 of the training file validate, and the 10,000 test
  images test (``--quick``: 2,000 / 1,000 / 2,000);
* **Caltech-101 Silhouettes** (28x28 binary, 101 classes, split 1 of Marlin et al. 2010),
  a real stand-in for Caltech-101, which is not available offline: its 4,100 training,
  2,264 validation and 2,307 test images (``--quick``: 1,000 / 500 / 1,000).

Acceptance (issue #4): sparse-coding features beat both raw pixels and PCA on at least one of
the two sets. ``--quick`` is a smoke run (about a minute).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results  # noqa: E402

from pyrogen.data import load  # noqa: E402
from pyrogen.models import KMeansFeatures, SparseCoding  # noqa: E402
from pyrogen.runs import Run, RunConfig  # noqa: E402

C_GRID = (0.001, 0.01, 0.1, 1.0)
ROWS = ("raw pixels", "PCA", "sparse coding", "k-means (triangle)", "autoencoder")
#: the registered data set of each set's name (a label of the autoencoder's run)
DATASETS = {"MNIST": "mnist", "Caltech-101 Silhouettes": "caltech101_silhouettes"}


def load_sets(quick: bool, mnist_train: int) -> dict:
    """``{name: (x_train, y_train, x_valid, y_valid, x_test, y_test)}`` as float32 / int64."""
    sets = {}
    m_tr, m_te = load("mnist", "train"), load("mnist", "test")
    n_tr, n_va, n_te = (2000, 1000, 2000) if quick else (mnist_train, 5000, 10000)
    sets["MNIST"] = (
        m_tr.data[:n_tr],
        m_tr.labels[:n_tr],
        m_tr.data[50000 : 50000 + n_va],
        m_tr.labels[50000 : 50000 + n_va],
        m_te.data[:n_te],
        m_te.labels[:n_te],
    )
    c = {s: load("caltech101_silhouettes", s) for s in ("train", "valid", "test")}
    lim = (1000, 500, 1000) if quick else (None, None, None)
    parts = []
    for split, n in zip(("train", "valid", "test"), lim):
        parts += [c[split].data[:n], c[split].labels[:n]]
    sets["Caltech-101 Silhouettes"] = tuple(parts)
    return sets


# ---------------------------------------------------------------- feature maps


def pca_features(xtr, others, k):
    mean = xtr.mean(0)
    _, _, vt = torch.linalg.svd(xtr - mean, full_matrices=False)
    w = vt[:k].T
    return [(x - mean) @ w for x in (xtr, *others)]


def sparse_coding_features(xtr, others, atoms, alpha, epochs, seed=0):
    mean = xtr.mean(0)
    sc = SparseCoding(
        atoms,
        alpha,
        batch_size=256,
        max_epochs=epochs,
        tol=1e-2,
        transform_tol=1e-3,
        max_iter=300,
        seed=seed,
    )
    sc.fit(xtr - mean)
    out = []
    for x in (xtr, *others):
        a = sc.transform(x - mean)
        out.append(torch.cat([a.clamp_min(0), (-a).clamp_min(0)], 1))
    nonzero = float((out[0] != 0).float().sum(1).mean())
    return out, {"alpha": alpha, "mean_active_atoms_train": nonzero}


def kmeans_features(xtr, others, k, seed=0):
    km = KMeansFeatures(k, max_iter=30, seed=seed).fit(xtr)
    return [km.transform(x) for x in (xtr, *others)], {"lloyd_iterations": km.n_iter_}


def autoencoder_features(xtr, others, hidden, epochs, seed=0, dataset=""):
    """Hidden units of a one-layer sigmoid autoencoder (the ``autoencoder`` family with
    ``kind="nonlinear"``, Bernoulli cross-entropy), built and trained with Adam (lr 1e-3,
    batch 100) through :class:`pyrogen.runs.Run`, as ``pyrogen train autoencoder`` does."""
    run = Run(
        RunConfig(
            "autoencoder",
            {"kind": "nonlinear", "hidden": str(hidden), "activation": "sigmoid"},
            dataset=dataset,
            epochs=epochs,
            batch_size=100,
            lr=1e-3,
            seed=seed,
            device="cpu",
            validate=False,
        )
    )
    run.train(train_data=xtr, progress=False)
    score = run.evaluate(xtr)  # the reconstruction on the training images, clean input
    ae = run.model.eval()
    with torch.no_grad():
        features = [ae.encode(x) for x in (xtr, *others)]
    return features, {"train_cross_entropy": score.reconstruction_error}


# ---------------------------------------------------------------- classifier


def linear_accuracy(ftr, ytr, fva, yva, fte, yte):
    """Test accuracy of the logistic regression whose C is best on the validation set."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(ftr)
    ftr, fva, fte = (scaler.transform(f) for f in (ftr, fva, fte))
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=500)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(ftr, ytr)
        val = clf.score(fva, yva)
        if best is None or val > best[0]:
            best = (val, c, clf.score(fte, yte))
    return {"valid": best[0], "C": best[1], "test": best[2]}


def run_set(name, data, args) -> dict:
    xtr, ytr, xva, yva, xte, yte = data
    ys = [y.numpy() for y in (ytr, yva, yte)]
    results = {}
    for row in ROWS:
        start = time.perf_counter()
        info = {}
        if row == "raw pixels":
            feats = [xtr, xva, xte]
        elif row == "PCA":
            feats = pca_features(xtr, (xva, xte), args.pca)
        elif row == "sparse coding":
            feats, info = sparse_coding_features(
                xtr, (xva, xte), args.atoms, args.alpha, args.sc_epochs
            )
        elif row == "k-means (triangle)":
            feats, info = kmeans_features(xtr, (xva, xte), args.atoms)
        else:
            feats, info = autoencoder_features(
                xtr, (xva, xte), args.atoms, args.ae_epochs, dataset=DATASETS.get(name, "")
            )
        feature_s = time.perf_counter() - start
        feats = [torch.as_tensor(f).double().numpy() for f in feats]
        acc = linear_accuracy(feats[0], ys[0], feats[1], ys[1], feats[2], ys[2])
        results[row] = {
            **acc,
            "dim": feats[0].shape[1],
            "feature_seconds": feature_s,
            "total_seconds": time.perf_counter() - start,
            **info,
        }
        print(
            f"  {name:24s} {row:20s} dim {feats[0].shape[1]:4d}  test {acc['test']:.4f} "
            f"(valid {acc['valid']:.4f}, C={acc['C']})  {time.perf_counter() - start:.1f}s",
            flush=True,
        )
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on small subsets")
    parser.add_argument("--mnist-train", type=int, default=10000, help="MNIST training images")
    parser.add_argument("--atoms", type=int, default=256, help="atoms / centres / hidden units")
    parser.add_argument("--alpha", type=float, default=0.25, help="sparse-coding L1 weight")
    parser.add_argument("--pca", type=int, default=64, help="PCA components")
    parser.add_argument("--sc-epochs", type=int, default=2, help="dictionary-learning epochs")
    parser.add_argument("--ae-epochs", type=int, default=10, help="autoencoder epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.quick:
        args.sc_epochs, args.ae_epochs = 1, 3
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    sets = load_sets(args.quick, args.mnist_train)
    results, sizes = {}, {}
    for name, data in sets.items():
        sizes[name] = {
            s: int(data[i].shape[0]) for s, i in (("train", 0), ("valid", 2), ("test", 4))
        }
        print(f"{name}: {sizes[name]}", flush=True)
        results[name] = run_set(name, data, args)
    names = list(sets)
    rows = [
        [row] + [results[n][row]["test"] for n in names] + [results["MNIST"][row]["dim"]]
        for row in ROWS
    ]
    header = ["features"] + [f"{n} test accuracy" for n in names] + ["feature dim"]
    beats = [
        n
        for n in names
        if results[n]["sparse coding"]["test"]
        > max(results[n]["raw pixels"]["test"], results[n]["PCA"]["test"])
    ]
    verdict = (
        f"sparse coding beats raw pixels and PCA on: {', '.join(beats) if beats else 'neither'} "
        f"-> acceptance {'MET' if beats else 'NOT met'}"
    )
    elapsed = time.perf_counter() - start
    m = machine()
    size_text = "; ".join(
        f"{n}: {s['train']} train / {s['valid']} valid / {s['test']} test" for n, s in sizes.items()
    )
    title = (
        f"Linear-classifier (logistic regression, C from {list(C_GRID)} on validation) test "
        f"accuracy of unsupervised features{' (--quick)' if args.quick else ''}. {size_text}. "
        f"{args.atoms} atoms / centres / hidden units, sparse-coding alpha {args.alpha} "
        f"(codes split into positive and negative parts), PCA {args.pca}. "
        f"CPU ({m['cpu']}, {m['torch_threads']} threads), {elapsed:.0f} s in all."
    )
    table = title + "\n\n" + markdown_table(header, rows) + "\n\n" + verdict
    print()
    print(table)
    record = {
        "machine": m,
        "quick": args.quick,
        "args": vars(args),
        "sizes": sizes,
        "results": results,
        "sparse_coding_beats_pixels_and_pca_on": beats,
        "seconds": elapsed,
    }
    js, md = write_results("features_quick" if args.quick else "features", record, table)
    print(f"\nwrote {js} and {md}")
    return 0 if beats else 1


if __name__ == "__main__":
    sys.exit(main())
