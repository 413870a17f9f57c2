"""RBM benchmarks: training speed against scikit-learn and a bare PyTorch loop; quality by AIS.

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

``--quality`` trains a 500-hidden RBM with PCD-1 (by default 100 epochs of SGD with
momentum 0.9, the learning rate decayed linearly to zero as Tieleman (2008) does;
``--rbm-decay none --rbm-momentum 0.5`` is the constant-rate recipe, which did worse) and
reports its AIS test log-likelihood beside Salakhutdinov & Murray (2008), and a two-layer
DBM's variational bound beside Salakhutdinov & Hinton (2009). ``--models rbm`` or
``--models dbm`` runs one of them. Both are built, trained and scored through
:class:`pyrogen.runs.Run`, as ``pyrogen train rbm`` / ``pyrogen train dbm`` and ``pyrogen
evaluate`` do. A smoke run: ``--quality --limit 1000 --rbm-epochs 1 --dbm-pretrain-epochs 1
--dbm-epochs 1 --test-limit 200 --ais-chains 10 --ais-betas 200`` (runs with ``--limit`` or
``--test-limit`` write ``*_quick`` results).
"""

from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", action="store_true", help="time PCD-1 epochs (see module docs)")
    parser.add_argument("--quality", action="store_true", help="AIS test NLL of an RBM and a DBM")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (--speed)")
    parser.add_argument(
        "--blocks", type=int, default=25, help="interleaved slices per epoch (--speed)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N training images"
    )
    parser.add_argument("--rbm-epochs", type=int, default=100, help="RBM epochs (--quality)")
    parser.add_argument("--rbm-lr", type=float, default=1e-4, help="RBM SGD lr, summed gradient")
    parser.add_argument(
        "--dbm-pretrain-epochs", type=int, default=10, help="epochs per pre-trained RBM"
    )
    parser.add_argument("--dbm-epochs", type=int, default=20, help="DBM joint-training epochs")
    parser.add_argument("--dbm-lr", type=float, default=1e-4, help="DBM SGD lr, summed gradient")
    parser.add_argument("--momentum", type=float, default=0.5, help="DBM SGD momentum")
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
        "--models", nargs="+", choices=("rbm", "dbm"), default=["rbm", "dbm"], help="--quality"
    )
    parser.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="score a seeded random subset of N test images (--quality)",
    )
    parser.add_argument("--ais-chains", type=int, default=100, help="AIS chains")
    parser.add_argument("--ais-betas", type=int, default=14500, help="AIS temperatures")
    args = parser.parse_args(argv)
    if not (args.speed or args.quality):
        parser.error("choose --speed and/or --quality")
    status = 0
    if args.speed:
        status |= speed(args)
    if args.quality:
        status |= quality(args)
    return status


def _train_family(name, config, lr, epochs, data, lr_schedule=None):
    """Build and train a registered family on ``data`` through :class:`pyrogen.runs.Run`
    (as ``pyrogen train`` does, with this benchmark's learning-rate schedule); returns the
    run and the training seconds."""
    run = Run(
        RunConfig(
            name,
            config,
            dataset="binarized_mnist",
            epochs=epochs,
            batch_size=BATCH,
            lr=lr,
            validate=False,
        )
    )
    start = time.perf_counter()
    run.train(train_data=data, progress=True, lr_schedule=lr_schedule)
    return run, time.perf_counter() - start


def _log_z_cell(ll, chains):
    d = ll.diagnostics
    return f"{d['log_z']:.2f} ± {d['log_z_stderr']:.2f} (ESS {ll.ess[0].item():.0f}/{chains})"


def _score(run, test, args, label, training, seconds, eval_note):
    """Test log-likelihood of a trained run by its family's protocol (AIS with
    ``--ais-chains`` chains): its table row and its JSON record."""
    start = time.perf_counter()
    # a seeded random subset, not the first N: MNIST's test set is not shuffled
    ll = run.evaluate(test, limit=args.test_limit, seed=0, num_samples=args.ais_chains)
    eval_seconds = time.perf_counter() - start
    print(ll.summary())
    d = ll.diagnostics
    row = [
        label,
        training,
        f"{seconds:.0f} s + {eval_seconds:.0f} s{eval_note}",
        f"{ll.nll:.2f} ± {ll.stderr:.2f}",
        _log_z_cell(ll, args.ais_chains),
        f"[{-d['log_likelihood_upper']:.2f}, {-d['log_likelihood_lower']:.2f}]",
    ]
    return row, {"train_seconds": seconds, "eval_seconds": eval_seconds, **ll.to_dict()}


def quality(args) -> int:
    """Train a 500-hidden RBM (PCD-1) and a 500-1000 DBM on binarized MNIST (all 60,000
    non-test images, or the first ``--limit`` training images) and score both on the 10,000
    test images (or a seeded random subset of ``--test-limit``)."""
    pyro.enable_validation(False)
    if args.limit:
        data = load("binarized_mnist", "train").tensor()[: args.limit]
    else:
        data = load("binarized_mnist", "train+valid")
    test = load("binarized_mnist", "test").tensor()
    n_test = min(len(test), args.test_limit or len(test))
    rows, record = [], {"machine": machine(), "results": {}}

    epochs = args.rbm_epochs
    decay = (lambda e: args.rbm_lr * (1 - e / epochs)) if args.rbm_decay == "linear" else None
    if "rbm" in args.models:
        run, seconds = _train_family(
            "rbm",
            {
                "hidden": HIDDEN,
                "cd_k": 1,
                "persistent": True,
                "chains": BATCH,
                "momentum": args.rbm_momentum,
                "ais_betas": args.ais_betas,
            },
            args.rbm_lr,
            args.rbm_epochs,
            data,
            lr_schedule=decay,
        )
        training = (
            f"PCD-1, {args.rbm_epochs} epochs, lr {args.rbm_lr * BATCH:g}"
            f"{' decayed linearly to 0' if decay else ''}, momentum {args.rbm_momentum:g}"
        )
        row, record["results"]["rbm"] = _score(
            run, test, args, f"pyrogen RBM {HIDDEN} hidden", training, seconds, " AIS"
        )
        rows.append(row)
        rows.append(["Salakhutdinov & Murray (2008) RBM 500", "CD-25", "-", "86.34", "AIS", "-"])
        rows.append(["Salakhutdinov & Murray (2008) RBM 500", "CD-1", "-", "125.53", "AIS", "-"])

    if "dbm" in args.models:
        total = 2 * args.dbm_pretrain_epochs + args.dbm_epochs
        first_joint = 2 * args.dbm_pretrain_epochs
        dbm_decay = None
        if args.dbm_decay == "linear":  # pre-training at the full rate, joint training decayed

            def dbm_decay(e):
                return args.dbm_lr * min(1.0, 1 - (e - first_joint) / args.dbm_epochs)

        run, seconds = _train_family(
            "dbm",
            {
                "hidden": (500, 1000),
                "pretrain_epochs": args.dbm_pretrain_epochs,
                "chains": BATCH,
                "momentum": args.momentum,
                "ais_betas": args.ais_betas,
            },
            args.dbm_lr,
            total,
            data,
            lr_schedule=dbm_decay,
        )
        training = (
            f"pre-training {args.dbm_pretrain_epochs}+{args.dbm_pretrain_epochs} epochs, joint "
            f"{args.dbm_epochs} epochs (mean field + PCD), lr {args.dbm_lr * BATCH:g}"
            f"{' decayed linearly to 0 in joint training' if dbm_decay else ''}, "
            f"momentum {args.momentum:g}"
        )
        label = "pyrogen DBM 500-1000 (variational bound)"
        row, record["results"]["dbm"] = _score(run, test, args, label, training, seconds, "")
        rows.append(row)
        rows.append(
            [
                "Salakhutdinov & Hinton (2009) DBM 500-1000",
                "variational bound",
                "-",
                "84.62",
                "AIS",
                "-",
            ]
        )

    m = record["machine"]
    title = (
        f"Test NLL on binarized MNIST (fixed binarization; {n_test:,} test images), trained on "
        f"{len(data)} images, batch {BATCH}; AIS {args.ais_chains} chains x {args.ais_betas} "
        f"temperatures; CPU ({m['cpu']}, {m['torch_threads']} threads)"
    )
    header = [
        "model",
        "training",
        "wall time",
        "test NLL (nats)",
        "log Z",
        "NLL sandwich (±3 s.e. of log Z)",
    ]
    table = title + "\n\n" + markdown_table(header, rows)
    print(table)
    name = "rbm_quality" if len(args.models) == 2 else f"rbm_quality_{args.models[0]}"
    if args.limit or args.test_limit:
        name += "_quick"
    js, md = write_results(name, record, table)
    print(f"\nwrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
