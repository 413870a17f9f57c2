"""Test log-likelihood of a VAE / IWAE trained by pyrogen, beside Burda et al. (2015).

Trains the ``vae`` family (``VAE.burda``) and scores it by the evaluation protocol
(importance sampling with k = 5000 on the whole test set) through :class:`pyrogen.runs.Run`,
as ``pyrogen train vae`` and ``pyrogen evaluate`` do, then prints our NLL with its standard
errors beside the paper's Table 1.

Schedules:

* ``fixed`` (default): Adam, constant learning rate ``--lr`` (1e-3), batch ``--batch-size``
  (100), ``--epochs`` epochs -- the CPU-sized run of the acceptance test;
* ``burda``: the paper's schedule for GPU runs: batch 20, Adam with learning rate
  1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7 (3,280 epochs in all).

``--out`` is a run folder (``pyrogen evaluate`` and ``pyrogen sample`` read it). Runs resume
from its checkpoint, so a long ``burda`` run can be stopped and restarted with the same
command.

Smoke run: ``--epochs 1 --max-steps 50 --eval-limit 100 --num-samples 50 --out runs/vae_smoke``
(runs scored with fewer than 5000 samples or on a subset write ``*_quick`` results).

Training data: by default all non-test images (``train+valid``: 60,000 for binarized MNIST,
the size of the MNIST training set Burda et al. train on), with no validation pass;
``--train-split train`` keeps the validation split out and reports the bound on it each epoch.

Note on comparability: Burda et al. trained and tested on MNIST binarized stochastically
(dynamic binarization); ``binarized_mnist`` here is the fixed binarization of Larochelle &
Murray (2011), on which models overfit more, and ``mnist`` with dynamic binarization is the
paper's setting.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results  # noqa: E402

from pyrogen.data import get_spec  # noqa: E402
from pyrogen.evaluate.reference import BURDA_2015_CITATION, BURDA_2015_MNIST  # noqa: E402
from pyrogen.runs import Run, RunConfig  # noqa: E402

BURDA_STAGES = 8  # i = 0..7


def burda_lr(epoch: int) -> float:
    """Learning rate of the paper's schedule at a 0-based epoch: 1e-3 * 10^(-i/7) during
    the 3^i epochs of stage i."""
    start = 0
    for i in range(BURDA_STAGES):
        start += 3**i
        if epoch < start:
            return 1e-3 * 10 ** (-i / 7)
    return 1e-3 * 10 ** (-(BURDA_STAGES - 1) / 7)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="binarized_mnist", help="data set name")
    parser.add_argument("--layers", type=int, default=1, choices=[1, 2], help="stochastic layers")
    parser.add_argument("--objective", default="iwae", choices=["elbo", "iwae"], help="objective")
    parser.add_argument(
        "--num-particles",
        "--k",
        dest="num_particles",
        type=int,
        default=5,
        help="particles in the objective (--k: the old name)",
    )
    parser.add_argument(
        "--estimator", default="iwae", choices=["iwae", "dreg"], help="IWAE gradient"
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs (fixed schedule)")
    parser.add_argument(
        "--train-split",
        default="auto",
        help="auto: train+valid when the set has a validation split (60k for MNIST), else train",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default 100 (fixed) / 20 (burda)"
    )
    parser.add_argument(
        "--lr", type=float, default=1e-3, help="Adam learning rate (fixed schedule)"
    )
    parser.add_argument(
        "--schedule", default="fixed", choices=["fixed", "burda"], help="training schedule"
    )
    parser.add_argument(
        "--num-samples",
        "--eval-k",
        dest="num_samples",
        type=int,
        default=5000,
        help="importance samples per test example (--eval-k: the old name)",
    )
    parser.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help="score a seeded random subset of N test examples",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop training after N steps (smoke runs)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed")
    parser.add_argument(
        "--out", default=None, help="run folder (default runs/vae_quality_<settings>)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    burda = args.schedule == "burda"
    epochs = sum(3**i for i in range(BURDA_STAGES)) if burda else args.epochs
    batch_size = args.batch_size or (20 if burda else 100)
    k = args.num_particles
    tag = f"{args.dataset}_l{args.layers}_{args.objective}_k{k}_{args.schedule}{epochs}"
    if args.train_split not in ("auto", "train+valid"):
        tag += f"_{args.train_split}"
    out = Path(args.out or f"runs/vae_quality_{tag}")
    progress = not args.no_progress

    split = args.train_split
    if split == "auto":  # all non-test images when the set has a validation split
        split = "train+valid" if "valid" in get_spec(args.dataset).splits else "train"
    run = Run(
        RunConfig(
            "vae",
            {
                "layers": args.layers,
                "objective": args.objective,
                "num_particles": k,
                "estimator": args.estimator,
            },
            dataset=args.dataset,
            epochs=epochs,
            batch_size=batch_size,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
            max_steps=args.max_steps,
            train_split=split,  # recorded in the run folder's config.json
        ),
        out,
    )
    test = run.split("test")
    start = time.perf_counter()
    result = run.train(progress=progress, lr_schedule=burda_lr if burda else None)
    train_seconds = time.perf_counter() - start  # this invocation only (resumes add up)
    start = time.perf_counter()
    # a seeded random subset, not the first N: MNIST's test set is not shuffled and its
    # first half is easier
    ll = run.evaluate(
        split="test",
        limit=args.eval_limit,
        seed=0,
        num_samples=args.num_samples,
        batch_size=100,
        progress=progress,
    )
    eval_seconds = time.perf_counter() - start
    print(ll.summary())

    paper_obj = "iwae" if args.objective == "iwae" else "vae"
    paper = BURDA_2015_MNIST.get((args.layers, paper_obj, k))
    binarization = test.binarization or "grey"
    rows = [
        [
            f"pyrogen {args.objective.upper()} k={k}, {args.layers} layer(s)",
            args.dataset,
            binarization,
            f"{epochs} ({args.schedule})",
            f"{ll.nll:.2f} ± {ll.stderr:.2f} (MC ± {ll.mc_stderr:.3f})",
            f"{args.num_samples} x {ll.num_examples}",
        ]
    ]
    for (lay, obj, paper_k), nll in BURDA_2015_MNIST.items():
        if lay == args.layers:
            rows.append(
                [
                    f"Burda et al. {obj.upper()} k={paper_k}, {lay} layer(s)",
                    "MNIST",
                    "dynamic",
                    "3280",
                    f"{nll:.2f}",
                    "5000 x 10000",
                ]
            )
    header = ["model", "data", "binarization", "epochs", "test NLL (nats)", "K x examples"]
    where = machine().get("gpu", machine()["cpu"])
    title = (
        f"Test NLL, {args.dataset}; trained in {train_seconds:.0f} s, evaluated in "
        f"{eval_seconds:.0f} s on {where} ({result.step} steps, batch {batch_size}, trained on "
        f"'{split}': {len(run.split(split))} images)"
    )
    note = (
        f"\n\nReference: {BURDA_2015_CITATION}\nOur '±' is the standard error over test examples; "
        "'MC ±' the Monte Carlo error of the estimate for these examples."
    )
    table = title + "\n\n" + markdown_table(header, rows) + note
    print(table)
    record = {
        "machine": machine(),
        "args": vars(args),
        "epochs": epochs,
        "steps": result.step,
        "train_seconds_this_invocation": train_seconds,
        "eval_seconds": eval_seconds,
        "paper_nll": paper,
        **ll.to_dict(),
    }
    reduced = args.eval_limit is not None or args.num_samples != 5000 or args.max_steps
    js, md = write_results(f"vae_quality_{tag}{'_quick' if reduced else ''}", record, table)
    print(f"\nwrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
