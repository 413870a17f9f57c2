r"""RBM benchmarks: training speed against scikit-learn and a bare PyTorch loop; quality of an
RBM, a DBM and a DBN by AIS beside RAISE.

``--speed`` times one epoch of PCD-1 on binarized MNIST (500 hidden units, batch 100,
learning rate 0.1 for the batch-mean gradient, 100 persistent chains, no momentum: the
settings of ``sklearn.neural_network.BernoulliRBM``) for

* **pyrogen**: ``RBM.model`` (``pyro.sample("v", BernoulliRBM(W, b, c), obs=x)`` in a
  ``pyro.plate``) trained with ``ContrastiveDivergence(k=1, persistent=True)`` through its
  ``loss_and_grads`` (what ``pyro.infer.SVI.step`` and ``pyrogen.train`` call) and
  ``torch.optim.SGD``; for reference also through ``differentiable_loss(...).backward()``,
  which builds an autograd graph;
* **bare PyTorch**: the same update written as matrix products alone (the floor);
* **scikit-learn** ``BernoulliRBM.fit`` on float32 and on float64 input.

pyrogen and the bare loop are timed in slices of an epoch taken in turn, so that a slow spell
of a shared machine hits both alike; scikit-learn's ``fit`` runs whole epochs between them.

Targets (issue #3): pyrogen <= 1.2x the bare loop, at least as fast as scikit-learn on
float32 and >= 2x faster than scikit-learn on float64.

``--quality`` trains three energy-based models on binarized MNIST through
:class:`pyrogen.runs.Run` (as ``pyrogen train rbm|dbm|dbn`` and ``pyrogen evaluate`` do) and
scores them on the test images:

* a 500-hidden **RBM**, PCD-1 with SGD, momentum 0.9 and the learning rate decayed linearly
  to zero (Tieleman 2008; ``--rbm-decay none --rbm-momentum 0.5`` is the constant-rate
  recipe, which did worse), beside Salakhutdinov & Murray (2008);
* a 500-1000 **DBM** (greedy pre-training, then mean field + PCD), beside Salakhutdinov &
  Hinton (2009); its AIS number is their variational bound: the mean-field lower bound on
  :math:`-F(v)` minus an AIS :math:`\log \hat Z`;
* a 500-500-2000 **DBN** (greedy CD-1 stack, then up-down fine-tuning), scored by
  Salakhutdinov & Murray's estimator: importance sampling through the directed layers with
  the recognition model as proposal (``--dbn-samples`` per image, on ``--dbn-test-limit``
  images) and AIS for the top RBM's :math:`\log Z`.

For the RBM and the DBM, AIS (optimistic: :math:`\mathbb E[\log \hat Z] \le \log Z`)
and RAISE (conservative: a stochastic lower bound, reverse annealing from the test images,
Burda, Grosse & Salakhutdinov 2015; :mod:`pyrogen.evaluate.reverse_ais`) are printed side by
side on the same images (the first ``--raise-examples`` of the scored ones, which are a
random subset fixed for every ``--seed``), one line per model::

    <model>: AIS (upper-ish, optimistic) X ± se, ESS e/K, log-w std s | RAISE (conservative)
    Y ± se, ESS median e/M, log-w std median s | gap X - Y nats on n test images

(``±``: Monte Carlo errors; ESS and the spread of the log-weights say whether a few chains
carry an estimate). The two bracket the test log-likelihood; a wide gap says neither is to
be trusted yet. ``--seed`` seeds training and both estimators and goes into the results'
name, ``results/rbm_quality[_<models>]_seed<N>[_quick].{json,md}``; two seeds' brackets are
compared with :func:`brackets_overlap`. AIS and RAISE fit their base-rate models to the
first 10,000 training images. ``--models rbm dbm`` runs some of them.

**Budget.** The defaults (:data:`QUALITY_DEFAULTS`) fit one seed in about 25 CPU-minutes
on one thread (measured on a shared AMD EPYC by timing short runs and extrapolating, CPU
seconds): RBM 20 epochs of PCD-1 (7 s each), AIS 100 chains x 10,000 temperatures (5 s per
1,000), RAISE 10 reverse chains x 1,000 temperatures on 100 test images (50 s): about 4
minutes; DBM 5 + 5 pre-training epochs (15 s each) and 10 joint epochs (39 s each), AIS
(10 s per 1,000 temperatures), RAISE (90 s): about 12 minutes; DBN 5 epochs per greedy
RBM (13 s each on average) and 2 up-down epochs (28 s each), AIS on the top RBM (12 s per
1,000 temperatures), 500 importance samples on 1,000 test images (80 s): about 8 minutes.
The former defaults (RBM 100 epochs, DBM 10 + 10 + 20 epochs, 14,500 temperatures, and
RAISE on that schedule) cost about 75 minutes; the papers' budgets are a flag away
(``--rbm-epochs``, ``--ais-betas``, ...).

``--dataset omniglot`` trains and scores on Omniglot instead (the lecture's DBM on
handwritten characters): ``pyrogen.data.load("omniglot")``, the background set (19,280
images) for training and the evaluation set (13,180) for testing, 28x28 area averages of the
105x105 drawings, binarized once by a Bernoulli draw with a fixed seed
(:func:`quality_data`). The resize leaves the strokes grey, so the binary strokes are
speckled: the numbers are not comparable with Burda et al.'s 28x28 Omniglot split, and no
published row is printed. ``--samples`` writes the DBM's samples beside training images
(``results/<name>_samples.png``).

``--quick`` is a smoke run in seconds (small layers, one epoch each, a few chains), not a
result: it writes ``*_smoke`` files (tests/test_rbm_benchmark.py runs it). Runs with
``--limit`` or ``--test-limit`` write ``*_quick`` results.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results  # noqa: E402

from pyrogen.data import load  # noqa: E402
from pyrogen.evaluate.result import LogLikelihood, LogLikelihoodBracket  # noqa: E402
from pyrogen.evaluate.reverse_ais import raise_log_likelihood  # noqa: E402
from pyrogen.infer import ContrastiveDivergence  # noqa: E402
from pyrogen.models.rbm import RBM  # noqa: E402
from pyrogen.runs import Run, RunConfig  # noqa: E402

HIDDEN, BATCH, LR = 500, 100, 0.1


def pyrogen_trainer(x: torch.Tensor, seed: int = 0, graph: bool = False):
    """``run(start, stop)`` trains on batches ``start:stop`` of ``x`` through pyrogen: the
    Pyro model and ``ContrastiveDivergence.loss_and_grads`` (the call ``pyro.infer.SVI`` and
    ``pyrogen.train`` make), or with ``graph=True`` ``differentiable_loss(...).backward()``."""
    torch.manual_seed(seed)
    rbm = RBM(x.shape[1], HIDDEN, pixel_mean=x.mean(0)).to(x.device)
    cd = ContrastiveDivergence(k=1, persistent=True, num_chains=BATCH)
    # the loss sums over the batch (Pyro's convention): lr / batch is sklearn's lr
    opt = torch.optim.SGD(rbm.parameters(), lr=LR / BATCH)

    def run(start, stop):
        for i in range(start * BATCH, stop * BATCH, BATCH):
            opt.zero_grad(set_to_none=True)
            if graph:
                cd.differentiable_loss(rbm.model, rbm.guide, x[i : i + BATCH]).backward()
            else:
                cd.loss_and_grads(rbm.model, rbm.guide, x[i : i + BATCH])
            opt.step()

    return run


def bernoulli(probs):
    return (torch.rand_like(probs) < probs).to(probs.dtype)  # faster than torch.bernoulli


def bare_trainer(x: torch.Tensor, seed: int = 0):
    """PCD-1 as matrix products alone (no autograd, no Pyro), reusing the chains' hidden
    pre-activation across updates like scikit-learn does."""
    torch.manual_seed(seed)
    V = x.shape[1]
    W = torch.randn(V, HIDDEN, device=x.device) * 0.01
    b = torch.logit(x.mean(0).clamp(1e-3, 1 - 1e-3))
    c = torch.zeros(HIDDEN, device=x.device)
    chain_pre = torch.addmm(c, x[:BATCH], W)
    lr = LR / BATCH

    def run(start, stop):
        nonlocal chain_pre
        for i in range(start * BATCH, stop * BATCH, BATCH):
            v_pos = x[i : i + BATCH]
            h_chain = bernoulli(torch.sigmoid(chain_pre))
            v_neg = bernoulli(torch.sigmoid(torch.addmm(b, h_chain, W.T)))
            h_pos = torch.sigmoid(torch.addmm(c, v_pos, W))
            chain_pre = torch.addmm(c, v_neg, W)
            h_neg = torch.sigmoid(chain_pre)
            W.addmm_(v_pos.T, h_pos, alpha=lr).addmm_(v_neg.T, h_neg, alpha=-lr)
            b.add_(v_pos.sum(0) - v_neg.sum(0), alpha=lr)
            c.add_(h_pos.sum(0) - h_neg.sum(0), alpha=lr)

    return run


def sklearn_epoch(x: np.ndarray, seed: int = 0):
    from sklearn.neural_network import BernoulliRBM

    def epoch():
        rbm = BernoulliRBM(
            n_components=HIDDEN, learning_rate=LR, batch_size=BATCH, n_iter=1, random_state=seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rbm.fit(x)

    return epoch


def interleaved_epochs(trainers: dict, num_batches: int, blocks: int, sync=None) -> dict:
    """One epoch of each trainer, run in ``blocks`` slices taken in turn (trainer A on slice 1,
    B on slice 1, A on slice 2, ...), so that a slow spell of a shared machine hits every
    trainer alike; returns the seconds each trainer spent on its whole epoch. ``sync`` (e.g.
    ``torch.cuda.synchronize``) is called before each clock reading."""
    sync = sync or (lambda: None)
    edges = [round(k * num_batches / blocks) for k in range(blocks + 1)]
    spent = dict.fromkeys(trainers, 0.0)
    names = list(trainers)
    for k in range(blocks):
        for name in names[k % len(names) :] + names[: k % len(names)]:
            sync()
            start = time.perf_counter()
            trainers[name](edges[k], edges[k + 1])
            sync()
            spent[name] += time.perf_counter() - start
    return spent


def speed(args) -> int:
    pyro.enable_validation(False)
    data = load("binarized_mnist", "train").data
    if args.limit:
        data = data[: args.limit]
    num_batches = -(-len(data) // BATCH)
    trainers = {
        "pyrogen": pyrogen_trainer(data),
        "bare": bare_trainer(data),
        "pyrogen_graph": pyrogen_trainer(data, graph=True),
    }
    whole = {
        "sklearn_f32": sklearn_epoch(data.numpy().astype(np.float32)),
        "sklearn_f64": sklearn_epoch(data.numpy().astype(np.float64)),
    }
    gpu = {}
    if torch.cuda.is_available():
        on_gpu = data.cuda()
        gpu = {"pyrogen_gpu": pyrogen_trainer(on_gpu), "bare_gpu": bare_trainer(on_gpu)}
    # warm-up (first-touch allocations, BLAS and thread-pool start-up), not timed
    for run in [*trainers.values(), *gpu.values()]:
        run(0, min(num_batches, 20))
    for epoch in whole.values():
        epoch()
    times = {name: [] for name in [*trainers, *whole, *gpu]}
    for r in range(args.rounds):
        spent = interleaved_epochs(trainers, num_batches, args.blocks)
        if gpu:
            spent.update(interleaved_epochs(gpu, num_batches, args.blocks, torch.cuda.synchronize))
        for name in [*trainers, *gpu]:
            times[name].append(spent[name])
        for name in list(whole)[r % 2 :] + list(whole)[: r % 2]:
            start = time.perf_counter()
            whole[name]()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}

    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    checks = [
        ("pyrogen / bare PyTorch", ratio("pyrogen", "bare"), "<= 1.2", 1.2),
        ("pyrogen / sklearn float32", ratio("pyrogen", "sklearn_f32"), "<= 1.0", 1.0),
        ("pyrogen / sklearn float64", ratio("pyrogen", "sklearn_f64"), "<= 0.5", 0.5),
    ]
    checks = [(a, b, c, b <= d) for a, b, c, d in checks]
    m = machine()
    title = (
        f"PCD-1 epoch time, binarized MNIST ({len(data)} images), {HIDDEN} hidden, batch {BATCH}, "
        f"CPU ({m['cpu']}, {m['torch_threads']} threads); median of {args.rounds} rounds after a "
        f"warm-up; pyrogen and the bare loop interleaved in {args.blocks} slices per epoch"
    )
    rows = [
        ["pyrogen (Pyro model + ContrastiveDivergence.loss_and_grads, float32)", med["pyrogen"]],
        [
            "pyrogen through differentiable_loss(...).backward() (for reference)",
            med["pyrogen_graph"],
        ],
        ["bare PyTorch PCD-1 loop (float32)", med["bare"]],
        ["scikit-learn BernoulliRBM (float32)", med["sklearn_f32"]],
        ["scikit-learn BernoulliRBM (float64)", med["sklearn_f64"]],
    ]
    header = ["trainer", "CPU s / epoch"]
    if gpu:  # the same table with a GPU column (scikit-learn has no GPU path)
        header.append(f"GPU s / epoch ({torch.cuda.get_device_name()})")
        gpu_cells = [med["pyrogen_gpu"], "-", med["bare_gpu"], "-", "-"]
        rows = [row + [cell] for row, cell in zip(rows, gpu_cells)]
        checks.append(
            (
                "pyrogen / bare PyTorch on the GPU",
                ratio("pyrogen_gpu", "bare_gpu"),
                "<= 1.2",
                ratio("pyrogen_gpu", "bare_gpu") <= 1.2,
            )
        )
    table = (
        title
        + "\n\n"
        + markdown_table(header, rows)
        + "\n\n"
        + markdown_table(
            ["ratio (median over rounds)", "value", "target", "met"],
            [[a, b, c, "yes" if d else "NO"] for a, b, c, d in checks],
        )
    )
    print(table)
    record = {
        "machine": m,
        "seconds_per_epoch": med,
        "all_rounds": times,
        "ratios": {a: b for a, b, _, _ in checks},
    }
    js, md = write_results("rbm_speed_quick" if args.limit else "rbm_speed", record, table)
    print(f"\nwrote {js} and {md}")
    return 0 if all(c[3] for c in checks) else 1


#: the default budget of ``--quality`` (one seed; see the module docs)
QUALITY_DEFAULTS = {
    "rbm_epochs": 20,
    "dbm_pretrain_epochs": 5,
    "dbm_epochs": 10,
    "dbn_greedy_epochs": 5,
    "dbn_updown_epochs": 2,
    "ais_chains": 100,
    "ais_betas": 10000,
    "raise_examples": 100,
    "raise_chains": 10,
    "raise_betas": 1000,
    "dbn_samples": 500,
    "dbn_test_limit": 1000,
}

#: ``--quick``: a smoke run of the whole pipeline in seconds (tests/test_rbm_benchmark.py);
#: architectures shrink too, and the labels say so
QUICK = {
    "limit": 300,
    "test_limit": 40,
    "rbm_hidden": 25,  # more than 20 in every top pair: log Z by AIS, not enumeration
    "dbm_hidden": (30, 25),
    "dbn_hidden": (30, 25, 40),
    "rbm_epochs": 1,
    "dbm_pretrain_epochs": 1,
    "dbm_epochs": 1,
    "dbn_greedy_epochs": 1,
    "dbn_updown_epochs": 1,
    "ais_chains": 20,
    "ais_betas": 100,
    "raise_examples": 10,
    "raise_chains": 4,
    "raise_betas": 50,
    "dbn_samples": 20,
    "dbn_test_limit": 20,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", action="store_true", help="time PCD-1 epochs (see module docs)")
    parser.add_argument(
        "--quality", action="store_true", help="AIS and RAISE test log-likelihoods (module docs)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (--speed)")
    parser.add_argument(
        "--blocks", type=int, default=25, help="interleaved slices per epoch (--speed)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N training images"
    )
    parser.add_argument("--seed", type=int, default=0, help="training and estimator seed")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="--quality in seconds: small layers and budgets (a smoke test, not a result)",
    )
    parser.add_argument("--results", default=None, help="results folder (default results/)")
    parser.add_argument("--rbm-epochs", type=int, default=None, help="RBM epochs (--quality)")
    parser.add_argument("--rbm-lr", type=float, default=1e-4, help="RBM SGD lr, summed gradient")
    parser.add_argument(
        "--dbm-pretrain-epochs", type=int, default=None, help="epochs per pre-trained RBM"
    )
    parser.add_argument("--dbm-epochs", type=int, default=None, help="DBM joint-training epochs")
    parser.add_argument("--dbm-lr", type=float, default=1e-4, help="DBM SGD lr, summed gradient")
    parser.add_argument("--momentum", type=float, default=0.5, help="DBM and DBN SGD momentum")
    parser.add_argument(
        "--dbm-decay",
        choices=("linear", "none"),
        default="none",
        help="DBM joint-training learning rate: constant, or decayed linearly to 0",
    )
    parser.add_argument("--rbm-momentum", type=float, default=0.9, help="RBM SGD momentum")
    parser.add_argument(
        "--rbm-decay",
        choices=("linear", "none"),
        default="linear",
        help="RBM learning rate: decayed linearly to 0 over the run (Tieleman 2008), or constant",
    )
    parser.add_argument(
        "--dbn-greedy-epochs", type=int, default=None, help="DBN epochs per greedy RBM"
    )
    parser.add_argument(
        "--dbn-updown-epochs", type=int, default=None, help="DBN up-down fine-tuning epochs"
    )
    parser.add_argument("--dbn-lr", type=float, default=1e-3, help="DBN SGD lr, summed gradient")
    parser.add_argument(
        "--dbn-samples", type=int, default=None, help="DBN importance samples per test image"
    )
    parser.add_argument(
        "--dbn-test-limit", type=int, default=None, help="test images the DBN is scored on"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=list(MODELS),
        help="--quality: which models to train and score",
    )
    parser.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="score a seeded random subset of N test images (--quality)",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="binarized_mnist",
        help="--quality: binarized MNIST, or Omniglot (binarized once with a fixed seed)",
    )
    parser.add_argument(
        "--samples",
        action="store_true",
        help="--quality: write the DBM's samples beside training images (a PNG in results/)",
    )
    parser.add_argument("--ais-chains", type=int, default=None, help="AIS chains")
    parser.add_argument("--ais-betas", type=int, default=None, help="AIS temperatures")
    parser.add_argument(
        "--min-ess",
        type=float,
        default=None,
        help="RBM and DBM: double the AIS chains (up to 16x) until their ESS reaches this",
    )
    parser.add_argument("--raise-examples", type=int, default=None, help="test images RAISE scores")
    parser.add_argument(
        "--raise-chains", type=int, default=None, help="RAISE reverse chains per test image"
    )
    parser.add_argument("--raise-betas", type=int, default=None, help="RAISE temperatures")
    args = parser.parse_args(argv)
    if not (args.speed or args.quality):
        parser.error("choose --speed and/or --quality")
    for key, value in {**QUALITY_DEFAULTS, **(QUICK if args.quick else {})}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for key in ("rbm_hidden", "dbm_hidden", "dbn_hidden"):
        if not hasattr(args, key):
            setattr(args, key, ARCHITECTURES[key])
    if args.results:
        import _common

        _common.RESULTS = Path(args.results)
    status = 0
    if args.speed:
        status |= speed(args)
    if args.quality:
        status |= quality(args)
    return status


MODELS = ("rbm", "dbm", "dbn")

#: the architectures of the full run: Salakhutdinov & Murray's RBM, Salakhutdinov & Hinton's
#: DBM, Hinton, Osindero & Teh's DBN
ARCHITECTURES = {"rbm_hidden": HIDDEN, "dbm_hidden": (500, 1000), "dbn_hidden": (500, 500, 2000)}


def _train_family(
    name, config, lr, epochs, data, lr_schedule=None, seed=0, progress=True, dataset=None
):
    """Build and train a registered family on ``data`` through :class:`pyrogen.runs.Run`
    (as ``pyrogen train`` does, with this benchmark's learning-rate schedule); returns the
    run and the training seconds."""
    run = Run(
        RunConfig(
            name,
            config,
            dataset=dataset or "binarized_mnist",
            epochs=epochs,
            batch_size=BATCH,
            lr=lr,
            seed=seed,
            validate=False,
        )
    )
    start = time.perf_counter()
    run.train(train_data=data, progress=progress, lr_schedule=lr_schedule)
    return run, time.perf_counter() - start


def _log_z_cell(ll, chains):
    """``log Z ± s.e. (ESS e/K)`` of an AIS result (an energy model's, or a DBN's top RBM)."""
    d = ll.diagnostics
    p = "top_log_z_" if "top_log_z" in d else "log_z_"
    value, stderr = d[p.rstrip("_")], d[p + "stderr"]
    ess = d.get(p + "ess", ll.ess[0].item() if p == "log_z_" else float("nan"))
    return f"{value:.2f} ± {stderr:.2f} (ESS {ess:.0f}/{d.get(p + 'num_chains', chains)})"


def subset_index(n: int, limit: int | None, seed: int = 0) -> torch.Tensor:
    """A seeded random subset of ``limit`` of ``n`` test images (all ``n`` in a random order
    when ``limit`` is None): MNIST's test set is not shuffled. The same for every run seed,
    so that runs with different seeds score the same images."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm if limit is None else perm[:limit]


def restrict(ll: LogLikelihood, count: int) -> LogLikelihood:
    """The same estimate on its first ``count`` examples: the per-example values (and ESS)
    of those examples, the Monte Carlo error and diagnostics of the whole (an AIS
    :math:`\\log \\hat Z` is shared by every example, so its error does not shrink)."""
    return LogLikelihood.from_per_example(
        ll.per_example[:count],
        ll.estimator,
        mc_stderr=ll.mc_stderr,
        bound=ll.bound,
        num_samples=ll.num_samples,
        ess=ll.ess[:count],
        khat=ll.khat[:count],
        diagnostics=ll.diagnostics,
    )


def bracket_line(label: str, bracket: LogLikelihoodBracket) -> str:
    """One printed line per model: ``AIS (upper-ish, optimistic) X ± se, ESS e/K | RAISE
    (conservative) Y ± se``, each with its log-weight spread, and the gap (``±`` is the
    Monte Carlo error; the test-set error is paired out of the gap, both ends being the
    same images)."""
    a, r = bracket.optimistic, bracket.conservative
    d = a.diagnostics
    rd = r.diagnostics
    if "log_z_ess" in d:
        ais = f"ESS {d['log_z_ess']:.1f}/{d['num_chains']}, log-w std {d['log_weight_std']:.2f}"
    else:  # an enumerable model: log Z exact
        ais = "log Z exact"
    return (
        f"{label}: AIS (upper-ish, optimistic) {a.mean:.2f} ± {a.mc_stderr:.2f}, {ais} | "
        f"RAISE (conservative) {r.mean:.2f} ± {r.mc_stderr:.2f}, ESS median "
        f"{float(r.ess.median()):.1f}/{r.num_samples}, log-w std median "
        f"{rd['log_weight_std_median']:.2f} | gap {bracket.gap:.2f} nats on "
        f"{a.num_examples} test images (test s.e. {a.stderr:.2f})"
    )


def brackets_overlap(a: dict, b: dict, num_stderr: float = 2.0) -> bool:
    """Whether two recorded brackets (``LogLikelihoodBracket.to_dict()``, e.g. of two seeds)
    overlap once each end is widened by ``num_stderr`` Monte Carlo errors."""

    def ends(x):
        lo = x["lower"] - num_stderr * _finite(x["raise"]["mc_stderr"])
        hi = x["upper"] + num_stderr * _finite(x["ais"]["mc_stderr"])
        return lo, hi

    (lo_a, hi_a), (lo_b, hi_b) = ends(a), ends(b)
    return max(lo_a, lo_b) <= min(hi_a, hi_b)


def _finite(x) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else 0.0


def bracket_for(dist, test, ais: LogLikelihood, args, base, progress: bool = False):
    """RAISE on the first ``args.raise_examples`` images of ``test`` (``args.raise_chains``
    reverse chains of ``args.raise_betas`` temperatures, base rates of ``base``, seeded with
    ``args.seed``) beside ``ais``, the AIS estimate on all of ``test``, restricted to the
    same images: a :class:`~pyrogen.evaluate.result.LogLikelihoodBracket`."""
    n = min(int(args.raise_examples), len(test))
    conservative = raise_log_likelihood(
        dist,
        test[:n],
        num_samples=args.raise_chains,
        betas=args.raise_betas,
        base_data=base,
        seed=args.seed,
        progress=progress,
    )
    return LogLikelihoodBracket(optimistic=restrict(ais, n), conservative=conservative)


def _score(run, test, args, label, training, seconds, base, progress):
    """A trained RBM's or DBM's test log-likelihood by AIS (``--ais-chains`` chains,
    ``--ais-betas`` temperatures, base rates of the training images ``base``) on ``test``,
    and RAISE on its first ``--raise-examples`` images with the AIS values of the same
    images beside it: the table row, the bracket line and the JSON record."""
    start = time.perf_counter()
    ll = run.evaluate(
        test,
        seed=args.seed,
        num_samples=args.ais_chains,
        betas=args.ais_betas,
        base_data=base,
        min_ess=args.min_ess,
        progress=progress,
    )
    ais_seconds = time.perf_counter() - start
    start = time.perf_counter()
    bracket = bracket_for(run.model.distribution(), test, ll, args, base, progress)
    raise_seconds = time.perf_counter() - start
    conservative = bracket.conservative
    print(ll.summary())
    print(conservative.summary())
    line = bracket_line(label, bracket)
    d = ll.diagnostics
    row = [
        label,
        training,
        f"{seconds:.0f} s + {ais_seconds:.0f} s AIS + {raise_seconds:.0f} s RAISE",
        f"{ll.nll:.2f} ± {ll.stderr:.2f} ({ll.num_examples})",
        _log_z_cell(ll, args.ais_chains),
        f"[{-d['log_likelihood_upper']:.2f}, {-d['log_likelihood_lower']:.2f}]",
        f"{-bracket.upper:.2f} ± {bracket.optimistic.mc_stderr:.2f}",
        f"{-bracket.lower:.2f} ± {conservative.mc_stderr:.2f} "
        f"(ESS {float(conservative.ess.median()):.1f}/{conservative.num_samples})",
    ]
    record = {
        "train_seconds": seconds,
        "eval_seconds": ais_seconds,
        "raise_seconds": raise_seconds,
        **ll.to_dict(),
        "bracket": bracket.to_dict(),
    }
    return row, line, record


def quality(args) -> int:
    """Train a 500-hidden RBM (PCD-1), a 500-1000 DBM and a 500-500-2000 DBN on binarized
    MNIST (all 60,000 non-test images, or the first ``--limit`` training images) and score
    them on the 10,000 test images (or a seeded random subset of ``--test-limit``), the RBM
    and DBM by AIS and RAISE side by side (module docs)."""
    pyro.enable_validation(False)
    limit = args.limit or (QUICK["limit"] if args.quick else None)
    test_limit = args.test_limit or (QUICK["test_limit"] if args.quick else None)
    data, test_all = quality_data(args.dataset)
    if limit:
        data = data[:limit]
    base = data[:BASE_IMAGES]  # AIS's and RAISE's base rates: training images, not test ones
    test = test_all[subset_index(len(test_all), test_limit)]
    progress = not args.quick
    seed = args.seed
    rows, lines = [], []
    record = {"machine": machine(), "seed": seed, "dataset": args.dataset, "results": {}}
    record["settings"] = {
        k: getattr(args, k)
        for k in (*QUALITY_DEFAULTS, "rbm_hidden", "dbm_hidden", "dbn_hidden", "min_ess")
    }

    if "rbm" in args.models:
        epochs = args.rbm_epochs
        decay = (lambda e: args.rbm_lr * (1 - e / epochs)) if args.rbm_decay == "linear" else None
        run, seconds = _train_family(
            "rbm",
            {
                "hidden": args.rbm_hidden,
                "cd_k": 1,
                "persistent": True,
                "chains": BATCH,
                "momentum": args.rbm_momentum,
                "ais_betas": args.ais_betas,
            },
            args.rbm_lr,
            epochs,
            data,
            lr_schedule=decay,
            seed=seed,
            progress=progress,
            dataset=args.dataset,
        )
        training = (
            f"PCD-1, {epochs} epochs, lr {args.rbm_lr * BATCH:g}"
            f"{' decayed linearly to 0' if decay else ''}, momentum {args.rbm_momentum:g}"
        )
        label = f"pyrogen RBM {args.rbm_hidden} hidden"
        row, line, record["results"]["rbm"] = _score(
            run, test, args, label, training, seconds, base, progress
        )
        rows.append(row)
        lines.append(line)
        if args.dataset == "binarized_mnist":
            for how, nll in (("CD-25", "86.34"), ("CD-1", "125.53")):
                rows.append(["Salakhutdinov & Murray (2008) RBM 500", how, "-", nll, "AIS", "-"])

    if "dbm" in args.models:
        pre, joint = args.dbm_pretrain_epochs, args.dbm_epochs
        dbm_decay = None
        if args.dbm_decay == "linear":  # pre-training at the full rate, joint training decayed

            def dbm_decay(e):
                return args.dbm_lr * min(1.0, 1 - (e - 2 * pre) / joint)

        run, seconds = _train_family(
            "dbm",
            {
                "hidden": tuple(args.dbm_hidden),
                "pretrain_epochs": pre,
                "chains": BATCH,
                "momentum": args.momentum,
                "ais_betas": args.ais_betas,
            },
            args.dbm_lr,
            2 * pre + joint,
            data,
            lr_schedule=dbm_decay,
            seed=seed,
            progress=progress,
            dataset=args.dataset,
        )
        training = (
            f"pre-training {pre}+{pre} epochs, joint {joint} epochs (mean field + PCD), lr "
            f"{args.dbm_lr * BATCH:g}"
            f"{' decayed linearly to 0 in joint training' if dbm_decay else ''}, "
            f"momentum {args.momentum:g}"
        )
        sizes = "-".join(str(h) for h in args.dbm_hidden)
        label = f"pyrogen DBM {sizes} (AIS: variational bound)"
        row, line, record["results"]["dbm"] = _score(
            run, test, args, label, training, seconds, base, progress
        )
        rows.append(row)
        lines.append(line)
        if args.dataset == "binarized_mnist":
            rows.append(
                ["Salakhutdinov & Hinton (2009) DBM 500-1000", "variational bound", "-", "84.62"]
                + ["AIS", "-"]
            )
        if args.samples:
            record["results"]["dbm"]["samples"] = samples_beside_data(
                run, data, f"{result_name(args)}_samples.png", seed
            )
            lines.append(
                f"DBM samples beside training images: {record['results']['dbm']['samples']}"
            )

    if "dbn" in args.models:
        greedy, updown = args.dbn_greedy_epochs, args.dbn_updown_epochs
        hidden = tuple(args.dbn_hidden)
        run, seconds = _train_family(
            "dbn",
            {
                "hidden": hidden,
                "greedy_epochs": greedy,
                "fine_tune": updown > 0,
                "momentum": args.momentum,
                "ais_betas": args.ais_betas,
                "ais_chains": args.ais_chains,
            },
            args.dbn_lr,
            len(hidden) * greedy + updown,
            data,
            seed=seed,
            progress=progress,
            dataset=args.dataset,
        )
        training = (
            f"greedy CD-1, {greedy} epochs per RBM, up-down {updown} epochs, lr "
            f"{args.dbn_lr * BATCH:g}, momentum {args.momentum:g}"
        )
        label = f"pyrogen DBN {'-'.join(str(h) for h in hidden)}"
        start = time.perf_counter()
        ll = run.evaluate(
            test[: args.dbn_test_limit],
            seed=seed,
            num_samples=args.dbn_samples,
            num_chains=args.ais_chains,
            betas=args.ais_betas,
            base_data=base,
            progress=progress,
        )
        eval_seconds = time.perf_counter() - start
        print(ll.summary())
        d = ll.diagnostics
        rows.append(
            [
                label,
                training,
                f"{seconds:.0f} s + {eval_seconds:.0f} s IS + AIS",
                f"{ll.nll:.2f} ± {ll.stderr:.2f} ({ll.num_examples})",
                _log_z_cell(ll, args.ais_chains),
                f"[{-(ll.mean + d['top_log_z'] - d['top_log_z_lower']):.2f}, "
                f"{-(ll.mean - d['top_log_z_upper'] + d['top_log_z']):.2f}]",
                f"{ll.nll:.2f} ± {ll.mc_stderr:.2f} (IS K={args.dbn_samples})",
                "- (not implemented for DBNs)",
            ]
        )
        lines.append(
            f"{label}: AIS on the top RBM (upper-ish, optimistic in log Z) + importance "
            f"sampling K={args.dbn_samples} (a stochastic lower bound) {ll.mean:.2f} ± "
            f"{ll.mc_stderr:.2f}, top-RBM ESS {d.get('top_log_z_ess', float('nan')):.1f}/"
            f"{d.get('top_log_z_num_chains', args.ais_chains)}, log-w std "
            f"{d.get('top_log_z_log_weight_std', float('nan')):.2f}, importance ESS median "
            f"{float(ll.ess.median()):.1f}/{args.dbn_samples} | RAISE: - on "
            f"{ll.num_examples} test images (test s.e. {ll.stderr:.2f})"
        )
        record["results"]["dbn"] = {"train_seconds": seconds, "eval_seconds": eval_seconds}
        record["results"]["dbn"].update(ll.to_dict())
        if args.dataset == "binarized_mnist":
            rows.append(
                ["Salakhutdinov & Murray (2008) DBN 500-500-2000", "CD-25", "-", "86.22"]
                + ["AIS", "-"]
            )

    m = record["machine"]
    title = (
        f"Test NLL on {DATASET_TITLES[args.dataset]}, seed {seed}, trained on {len(data)} "
        f"images, batch {BATCH}; AIS {args.ais_chains} chains x {args.ais_betas} temperatures, "
        f"RAISE {args.raise_chains} reverse chains x {args.raise_betas} temperatures on the "
        f"first {args.raise_examples} of the scored test images (AIS beside it on the same "
        f"images), base rates from {len(base)} training images; CPU ({m['cpu']}, "
        f"{m['torch_threads']} threads)"
        + ("; --quick: a smoke run, not a result" if args.quick else "")
    )
    header = [
        "model",
        "training",
        "wall time",
        "test NLL, AIS (test images)",
        "log Z",
        "NLL sandwich (±3 s.e. of log Z)",
        "NLL AIS (optimistic), RAISE images",
        "NLL RAISE (conservative)",
    ]
    rows = [row + ["-"] * (len(header) - len(row)) for row in rows]
    table = title + "\n\n" + markdown_table(header, rows) + "\n\n" + "\n".join(lines)
    print(table)
    js, md = write_results(result_name(args), record, table)
    print(f"\nwrote {js} and {md}")
    return 0


#: training images whose pixel marginals give AIS's and RAISE's base-rate model
BASE_IMAGES = 10000

#: the data sets of --quality
DATASETS = ("binarized_mnist", "omniglot")
DATASET_TITLES = {
    "binarized_mnist": "binarized MNIST (fixed binarization)",
    "omniglot": "Omniglot (background set for training, evaluation set for testing, 28x28, "
    "binarized once with a fixed seed)",
}
#: the seed of Omniglot's one fixed binarization (the same for every run seed)
OMNIGLOT_BINARIZATION_SEED = 0


def quality_data(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and test images of ``--dataset``: binarized MNIST's fixed binarization
    (all 60,000 non-test images and the 10,000 test images), or Omniglot's grey levels
    (``pyrogen.data.load("omniglot")``: the background set for training, the evaluation set
    for testing) binarized once by a Bernoulli draw seeded with
    :data:`OMNIGLOT_BINARIZATION_SEED`, so that every run and seed sees the same binary
    images."""
    if dataset == "binarized_mnist":
        return (
            load("binarized_mnist", "train+valid").tensor(),
            load("binarized_mnist", "test").tensor(),
        )
    if dataset != "omniglot":
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    gen = torch.Generator().manual_seed(OMNIGLOT_BINARIZATION_SEED)
    out = []
    for split in ("train", "test"):
        grey = load("omniglot", split).tensor().float()
        out.append(torch.bernoulli(grey.clamp(0, 1), generator=gen))
    return out[0], out[1]


def result_name(args) -> str:
    """``rbm_quality[_omniglot][_<models>]_seed<N>[_smoke|_quick]``."""
    name = "rbm_quality"
    if args.dataset != "binarized_mnist":
        name += f"_{args.dataset}"
    if len(args.models) != len(MODELS):
        name += "_" + "_".join(args.models)
    name += f"_seed{args.seed}"
    if args.quick:
        name += "_smoke"
    elif args.limit or args.test_limit:
        name += "_quick"
    return name


def samples_beside_data(run, data: torch.Tensor, filename: str, seed: int, n: int = 64) -> str:
    r"""A PNG in the results folder: ``n`` training images (left half of each row) beside
    ``n`` samples of the trained model (:meth:`pyrogen.runs.Run.sample`: the means of
    :math:`p(v \mid h)` at the end of its Gibbs chains; right half); returns its path."""
    import _common

    from pyrogen.plotting import save_image_grid

    samples, _ = run.sample(n, seed=seed)
    side = int(math.isqrt(n))
    gen = torch.Generator().manual_seed(seed)
    real = data[torch.randperm(len(data), generator=gen)[:n]].float()
    rows = torch.cat(
        [real.reshape(side, -1, real.shape[-1]), samples.reshape(side, -1, real.shape[-1]).cpu()],
        1,
    )
    path = _common.RESULTS / filename
    _common.RESULTS.mkdir(parents=True, exist_ok=True)
    save_image_grid(
        rows.reshape(-1, real.shape[-1]),
        path,
        (28, 28),
        nrow=rows.shape[1],
        title="training images (left) | model samples (right)",
        scale=1.0,
    )
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
