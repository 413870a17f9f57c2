"""Exact test log-likelihood of the tractable autoregressive models, and NADE's sampling speed.

Trains FVSBN, NADE and PixelCNN on binarized MNIST (the fixed binarization of Larochelle &
Murray 2011: 50,000 training images; the 10,000 test images are scored) through pyrogen's
registry and training engine -- each is a Pyro model ``pyro.sample("x", D(net), obs=x)``
trained by SVI with ``Trace_ELBO``, which without latent variables is the exact negative
log-likelihood -- for a stated CPU budget, and prints the exact test NLL beside the published
numbers:

* FVSBN 97.45 and NADE 88.86: Larochelle & Murray (2011), their MNIST table;
* PixelCNN 81.30 and PixelRNN (Diagonal BiLSTM) 79.20: van den Oord, Kalchbrenner &
  Kavukcuoglu (2016), Table 4.

Those models were trained to convergence (NADE: SGD for hundreds of epochs with early
stopping; PixelCNN and PixelRNN: much larger networks on GPUs); the budgets here are a few
CPU epochs, stated in the table.

Sampling speed: NADE with D = 784, H = 500 draws a batch of samples with the O(DH)
recurrence :math:`a_{k+1} = a_k + W_{:, k} x_k` (``sample``) and with every hidden layer
recomputed from scratch, :math:`O(D^2 H)` (``naive_sample``), in the same run; both give the
same samples for the same random state. PixelCNN's cached row-by-row sampler is timed against
recomputing the whole network per pixel.

Run ``python benchmarks/autoregressive.py`` (about an hour on one thread of a busy 2-core
CPU), or ``--quick`` for a smoke run on a subset (``--limit``, ``--epochs``, ``--test-limit``
choose a reduced size; reduced runs write ``results/autoregressive_quick.*``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results  # noqa: E402

from pyrogen.runs import Run, RunConfig  # noqa: E402

PUBLISHED = {
    "fvsbn": ("FVSBN (Larochelle & Murray 2011)", 97.45),
    "nade": ("NADE, H = 500 (Larochelle & Murray 2011)", 88.86),
    "pixelcnn": ("PixelCNN (van den Oord et al. 2016)", 81.30),
    "pixelrnn": ("PixelRNN, Diagonal BiLSTM (van den Oord et al. 2016)", 79.20),
}

#: family -> (config, batch size, learning rate per epoch). The schedules were chosen on
#: the validation split in short runs (see the families' notes); decaying the rate for the
#: last epoch is worth one to two nats for every model.
RUNS = {
    "fvsbn": ({}, 100, [1e-2, 1e-2, 1e-2, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4]),
    "nade": ({"hidden": 500}, 20, [5e-3, 5e-3, 5e-4]),
    "pixelcnn": ({"hidden": 32, "layers": 6}, 100, [3e-3, 3e-3, 3e-4]),
}


def train_and_score(name, train_limit=None, test_limit=None, epochs_override=None, progress=True):
    """Train a family on binarized MNIST through :class:`pyrogen.runs.Run` (as ``pyrogen
    train`` does, with this benchmark's per-epoch learning rates) and score it on the test
    set (or a seeded random subset of ``test_limit`` images) by its exact log-likelihood."""
    config, batch, lrs = RUNS[name]
    if epochs_override is not None:
        lrs = lrs[:epochs_override]
    run = Run(
        RunConfig(
            name,
            config,
            dataset="binarized_mnist",
            epochs=len(lrs),
            batch_size=batch,
            lr=lrs[0],
            validate=False,
            train_limit=train_limit,
        )
    )
    start = time.perf_counter()
    run.train(lr_schedule=lambda epoch: lrs[min(epoch, len(lrs) - 1)], progress=progress)
    seconds = time.perf_counter() - start
    n_train = (
        len(run.splits()[0]) if train_limit is None else min(train_limit, len(run.splits()[0]))
    )
    # not the first N: MNIST's test set is not shuffled and its first half is easier
    ll = run.evaluate(split="test", limit=test_limit, seed=0, progress=progress)
    print(f"{name}: {ll.summary()}")
    lr_text = ", ".join(f"{lr:g}" for lr in lrs)
    return run.model, {
        "config": config,
        "batch_size": batch,
        "epochs": len(lrs),
        "learning_rates": lrs,
        "train_images": n_train,
        "train_seconds": seconds,
        "budget": f"{len(lrs)} epochs (Adam, lr {lr_text}), batch {batch}, {seconds / 60:.1f} min",
        **ll.to_dict(),
    }


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def nade_sampling(module, num_samples: int, repeats: int) -> dict:
    """Seconds to draw ``num_samples`` samples with the recurrence and naively (best of
    ``repeats``), and a check that both give the same samples."""
    dist = module.distribution()
    torch.manual_seed(1)
    fast = dist.sample((num_samples,))
    torch.manual_seed(1)
    slow = dist.naive_sample((num_samples,))
    same = bool(torch.equal(fast, slow))
    t_fast = _time(lambda: dist.sample((num_samples,)), repeats)
    t_slow = _time(lambda: dist.naive_sample((num_samples,)), max(1, repeats // 2))
    net = module.net
    return {
        "num_features": net.num_features,
        "hidden": net.hidden,
        "num_samples": num_samples,
        "recurrence_seconds": t_fast,
        "naive_seconds": t_slow,
        "speedup": t_slow / t_fast,
        "same_samples": same,
    }


def pixelcnn_sampling(module, num_samples: int) -> dict:
    dist = module.distribution()
    torch.manual_seed(1)
    fast = dist.sample((num_samples,))
    torch.manual_seed(1)
    slow = dist.naive_sample((num_samples,))
    t_fast = _time(lambda: dist.sample((num_samples,)), 2)
    t_slow = _time(lambda: dist.naive_sample((num_samples,)), 1)
    return {
        "num_samples": num_samples,
        "cached_seconds": t_fast,
        "naive_seconds": t_slow,
        "speedup": t_slow / t_fast,
        "same_samples": bool(torch.equal(fast, slow)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(RUNS),
        choices=list(RUNS),
        help="models to train and score",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 images, 1 epoch")
    parser.add_argument("--limit", type=int, default=None, help="use the first N training images")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train only the first N epochs of each model's schedule (default: all of them)",
    )
    parser.add_argument(
        "--test-limit", type=int, default=None, help="score a seeded random subset of N test images"
    )
    parser.add_argument("--nade-samples", type=int, default=500, help="samples per timing")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit = args.limit or 2000
        args.test_limit = args.test_limit or 1000
        args.epochs = args.epochs or 1
    torch.set_num_threads(args.threads)
    pyro.enable_validation(False)  # a benchmark: the tests run with validation on

    record = {"machine": machine(), "results": {}}
    modules = {}
    for name in args.models:
        modules[name], record["results"][name] = train_and_score(
            name, args.limit, args.test_limit, epochs_override=args.epochs
        )
    first = record["results"][args.models[0]]
    n_train = record["train_images"] = first["train_images"]
    n_test = record["test_images"] = first["num_examples"]

    # sampling speed: the trained NADE when there is one (same cost as an untrained one)
    if "nade" in modules:
        nade = modules["nade"]
    else:
        nade = Run(RunConfig("nade", RUNS["nade"][0], dataset="binarized_mnist")).build()
    with torch.no_grad():
        record["nade_sampling"] = s = nade_sampling(nade, args.nade_samples, repeats=3)
    if "pixelcnn" in modules:
        with torch.no_grad():
            record["pixelcnn_sampling"] = p = pixelcnn_sampling(modules["pixelcnn"], 16)

    rows = []
    for name, (label, nll) in PUBLISHED.items():
        if name in record["results"]:
            r = record["results"][name]
            rows.append([f"pyrogen {name}", r["budget"], f"{r['nll']:.2f} ± {r['stderr']:.2f}"])
        rows.append([label, "published", f"{nll:.2f}"])
    threads = torch.get_num_threads()
    lines = [
        f"Exact test NLL (nats), binarized MNIST (fixed binarization), {n_train} "
        f"training images, {n_test} test images, CPU ({threads} threads)",
        "",
        markdown_table(["model", "training", "test NLL"], rows),
        "",
        f"NADE sampling, D = {s['num_features']}, H = {s['hidden']}, {s['num_samples']} samples "
        f"per call (best of repeats), same samples: {s['same_samples']}",
        "",
        markdown_table(
            ["sampler", "seconds", "speed-up"],
            [
                ["O(DH) recurrence (NADE.sample)", s["recurrence_seconds"], f"{s['speedup']:.1f}x"],
                ["naive recomputation (NADE.naive_sample)", s["naive_seconds"], "1.0x"],
            ],
        ),
        "",
        f"target: recurrence at least 10x faster -- {'met' if s['speedup'] >= 10 else 'NOT met'}",
    ]
    if "pixelcnn_sampling" in record:
        lines += [
            "",
            f"PixelCNN sampling, {p['num_samples']} images: cached {p['cached_seconds']:.2f} s, "
            f"whole network per pixel {p['naive_seconds']:.2f} s ({p['speedup']:.1f}x; same "
            f"samples: {p['same_samples']})",
        ]
    if "nade" in record["results"]:
        nll = record["results"]["nade"]["nll"]
        lines.append(f"NADE below 95 nats: {'yes' if nll < 95 else 'NO'} ({nll:.2f})")
    text = "\n".join(lines)
    print(text)
    reduced = args.quick or any(v is not None for v in (args.limit, args.epochs, args.test_limit))
    name = "autoregressive_quick" if reduced else "autoregressive"
    js, md = write_results(name, record, text)
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
