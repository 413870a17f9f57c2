"""The ``pyrogen`` command: argument parsing only.

``pyrogen train / evaluate / sample / demo`` call :mod:`pyrogen.runs` (a run folder: build ->
train -> evaluate -> sample), ``pyrogen datasets`` calls :mod:`pyrogen.data`. The flags of
``pyrogen train <family>`` are generated from the family's config dataclass
(:mod:`pyrogen.families.base`), so a new family appears here without a change to this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings

from pyrogen import data as pdata
from pyrogen import distributed
from pyrogen.data.registry import GENERATED
from pyrogen.families.base import parse_sizes
from pyrogen.registry import get_family, load_families
from pyrogen.runs import Run, RunConfig, demo
from pyrogen.train import RUN_PRECISIONS, CheckpointError, resolve_device

# ------------------------------------------------------------------------------ argparse


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser, family) -> None:
    config_cls = family.config_cls
    group = parser.add_argument_group(f"{config_cls.__name__} (model options)")
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        default = f.default
        if meta.get("sizes"):
            shown = ",".join(str(v) for v in default)
            group.add_argument(
                _flag(f.name),
                type=lambda text, name=f.name: parse_sizes(text, name),
                default=tuple(default),
                metavar="N[,N...]",
                help=f"{meta.get('help', '')} (default: {shown})",
            )
        elif isinstance(default, bool):
            group.add_argument(
                _flag(f.name),
                action=argparse.BooleanOptionalAction,
                default=default,
                help=f"{meta.get('help', '')} (default: {default})",
            )
        else:
            group.add_argument(
                _flag(f.name),
                type=type(default),
                default=default,
                choices=meta.get("choices"),
                help=f"{meta.get('help', '')} (default: {default})",
            )
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for old, (new, _) in family.deprecated_options.items():
        target = fields[new]
        group.add_argument(
            _flag(old),
            dest=f"deprecated_{old}",
            type=int if target.metadata.get("sizes") else type(target.default),
            default=None,
            help=f"deprecated: use {_flag(new)} (kept for one release)",
        )


def _add_device(p) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyrogen",
        description="Deep unsupervised learning as Pyro models: train, evaluate, sample.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the data sets and where their files are found")
    p.add_argument(
        "--root",
        default=None,
        help="data folder to search (default: $PYROGEN_DATA, then ~/.cache/pyrogen)",
    )

    p = sub.add_parser("train", help="train a model family on a data set")
    fam_sub = p.add_subparsers(dest="family", required=True, metavar="FAMILY")
    for name, fam in load_families().items():
        fp = fam_sub.add_parser(name, help=fam.description, description=fam.description)
        _add_config_flags(fp, fam)
        g = fp.add_argument_group("training")
        g.add_argument(
            "--dataset",
            default=fam.default_dataset or "binarized_mnist",
            help=f"one of {sorted(pdata.DATASETS) + sorted(GENERATED)}",
        )
        g.add_argument(
            "--binarize",
            default="auto",
            choices=["auto", "none", "dynamic", "stochastic", "threshold"],
            help="for grey-level sets (mnist, omniglot): auto = dynamic binarization for "
            "binary models, the grey levels (none) for Gaussian observations",
        )
        g.add_argument("--epochs", type=int, default=10, help="passes over the training set")
        g.add_argument("--batch-size", type=int, default=100, help="examples per step")
        g.add_argument(
            "--lr",
            type=float,
            default=fam.default_lr,
            help=f"learning rate of the family's optimizer (default: {fam.default_lr})",
        )
        _add_device(g)
        g.add_argument(
            "--seed", type=int, default=0, help="seed of initialisation, sampling and shuffling"
        )
        g.add_argument("--out", required=True, help="run folder (config, checkpoint, history)")
        g.add_argument(
            "--checkpoint-every",
            type=int,
            default=None,
            help="steps between checkpoints (default: each epoch)",
        )
        g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
        g.add_argument("--no-validate", action="store_true", help="skip validation at epoch ends")
        g.add_argument(
            "--evaluate",
            action="store_true",
            help="after training, score the test set by the family's evaluation protocol",
        )
        g.add_argument(
            "--eval-k",
            type=int,
            default=0,
            help="deprecated: use --evaluate (and pyrogen evaluate --num-samples)",
        )
        g.add_argument("--no-progress", action="store_true", help="no progress bar")
        g.add_argument(
            "--precision",
            default="fp32",
            choices=RUN_PRECISIONS,
            help="bf16: bfloat16 autocast inside the model's networks during training "
            "(log-weights, losses and evaluation stay float32); fp64: the whole model and "
            "data in float64 (slower; runs on any number of processes agree to rounding)",
        )
        g.add_argument(
            "--compile",
            action="store_true",
            help="torch.compile the model's networks (eager, with a warning, where it fails)",
        )
        g.add_argument(
            "--nproc",
            type=int,
            default=1,
            help="data-parallel processes on this machine (starts torchrun; see README "
            "'Scaling out'); under torchrun it is ignored",
        )

    p = sub.add_parser("evaluate", help="test log-likelihood of a trained run")
    p.add_argument("run", help="run folder written by `pyrogen train`")
    p.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="importance samples per example, or AIS chains (default: the family's protocol: "
        "5000 importance samples, 100 AIS chains; not for exact families)",
    )
    p.add_argument(
        "--k", dest="deprecated_k", type=int, default=None, help="deprecated: use --num-samples"
    )
    p.add_argument("--split", default="test", help="data split to score")
    p.add_argument("--batch-size", type=int, default=100, help="examples per batch")
    p.add_argument(
        "--limit", type=int, default=None, help="score a seeded random subset of N examples"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the subset (--limit) and of the estimator's samples: the same estimate "
        "in one process or under torchrun",
    )
    _add_device(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("sample", help="draw samples from a trained run into a PNG grid")
    p.add_argument("run", help="run folder written by `pyrogen train`")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--out", default=None, help="PNG path (default: RUN/samples.png)")
    p.add_argument("--seed", type=int, default=0, help="random seed")

    p = sub.add_parser("demo", help="train and evaluate a small IWAE, write a sample grid")
    p.add_argument(
        "--dataset", default="auto", help="auto: binarized_mnist when found locally, else digits"
    )
    p.add_argument("--out", default="runs/demo", help="run folder")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    p.add_argument(
        "--eval-k", type=int, default=None, help="override the demo's importance samples"
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes (what the test suite runs)")
    _add_device(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _deprecated(old: str, new: str) -> None:
    # FutureWarning: shown by default, the category Python reserves for end users
    message = f"pyrogen: {old} is deprecated; use {new} (kept for one release)"
    warnings.warn(message, FutureWarning, stacklevel=3)


def _train(args) -> int:
    fam = get_family(args.family)
    config = {f.name: getattr(args, f.name) for f in dataclasses.fields(fam.config_cls)}
    for old in fam.deprecated_options:
        value = getattr(args, f"deprecated_{old}")
        if value is not None:
            new = fam.deprecated_options[old][0]
            _deprecated(_flag(old), _flag(new))
            config.pop(new, None)
            config[old] = value
    run = Run(
        RunConfig(
            args.family,
            config,
            dataset=args.dataset,
            binarize=args.binarize,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
            checkpoint_every=args.checkpoint_every,
            validate=not args.no_validate,
            max_steps=args.max_steps,
            precision=args.precision,
            compile=args.compile,
        ),
        args.out,
    )
    result = run.train(progress=not args.no_progress)
    main_rank = distributed.is_main()  # under torchrun, rank 0 prints
    if main_rank:
        seconds, where = f"{result.seconds:.0f}", result.checkpoint
        print(f"trained {result.step} steps in {seconds} s; checkpoint {where}")
    if args.eval_k:
        _deprecated("--eval-k", "--evaluate")
    if args.evaluate or args.eval_k:
        num_samples = args.eval_k or None
        if fam.sample_option is None:
            num_samples = None
        run.model.eval()
        result = run.evaluate(
            num_samples=num_samples, seed=args.seed, progress=not args.no_progress
        )
        if main_rank:
            print(result.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``pyrogen`` command; an unreadable checkpoint ends it with its message (which
    names the file and the ways out) and exit status 1 rather than a traceback.

    :param argv: the arguments (default ``sys.argv[1:]``).
    """
    try:
        return _command(argv)
    except CheckpointError as error:
        print(f"pyrogen: error: {error}", file=sys.stderr)
        return 1


def _command(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "datasets":
        print(pdata.format_table(pdata.describe(args.root)))
        return 0
    if args.command == "train":
        if args.nproc > 1 and not distributed.launched():
            return distributed.relaunch(sys.argv[1:] if argv is None else argv, args.nproc)
        return _train(args)
    if args.command == "evaluate":
        if args.deprecated_k is not None:
            _deprecated("--k", "--num-samples")
            args.num_samples = args.num_samples or args.deprecated_k
        # under torchrun the ranks share the test set (pyrogen.distributed)
        distributed.init(resolve_device(args.device))
        run = Run.load(args.run, device=args.device)
        result = run.evaluate(
            split=args.split,
            limit=args.limit,
            seed=args.seed,
            num_samples=args.num_samples,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
        if distributed.is_main():
            print(result.summary())
        return 0
    if args.command == "sample":
        print(Run.load(args.run).sample(args.n, args.out, args.seed)[1])
        return 0
    if args.command == "demo":
        demo(
            args.dataset,
            args.out,
            smoke=args.smoke,
            device=args.device,
            progress=not args.no_progress,
            epochs=args.epochs,
            eval_k=args.eval_k,
        )
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
