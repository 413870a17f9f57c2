"""The ``pyrogen`` command: train, evaluate, sample, list data sets, run the demo.

A run folder (``--out``) holds ``config.json`` (family, its config, data set, training
options), ``checkpoint.pt`` (written atomically; training resumes from it), ``history.json``
and, after evaluation, ``eval.json``. The functions below (:func:`train_run`,
:func:`load_run`, :func:`evaluate_run`, :func:`sample_run`) are the same steps for use from
Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pyrogen import data as pdata
from pyrogen.registry import DataInfo, get_family, load_families
from pyrogen.train import load_checkpoint, resolve_device, train

RUN_CONFIG = "config.json"


# ------------------------------------------------------------------------------ data


def _default_binarize(dataset: str, binarize: str | None) -> str | None:
    """Binary sets are used as stored; grey-level sets default to dynamic binarization."""
    if binarize not in (None, "auto"):
        return binarize
    spec = pdata.get_spec(dataset)
    return None if spec.binarization == "fixed" else "dynamic"


def load_splits(dataset: str, binarize: str | None = "auto", root=None):
    """``(train, valid or None, test)`` of ``dataset`` for training a binary model."""
    binarize = _default_binarize(dataset, binarize)
    spec = pdata.get_spec(dataset)
    train_set = pdata.load(dataset, "train", root=root, binarize=binarize)
    valid = (
        pdata.load(dataset, "valid", root=root, binarize=binarize)
        if "valid" in spec.splits
        else None
    )
    test = pdata.load(dataset, "test", root=root, binarize=binarize)
    return train_set, valid, test


def data_info(train_set) -> DataInfo:
    return DataInfo(
        num_pixels=train_set.num_pixels,
        image_shape=tuple(train_set.image_shape),
        pixel_mean=train_set.data.float().mean(0),
        dataset=train_set.name,
    )


def _subset(ds, limit: int | None):
    if limit is None or limit >= len(ds):
        return ds
    return ds.tensor()[:limit]


# ------------------------------------------------------------------------------ runs


def train_run(
    family: str,
    dataset: str,
    out: str | os.PathLike,
    config: dict[str, Any] | None = None,
    *,
    binarize: str | None = "auto",
    epochs: int = 10,
    batch_size: int = 100,
    lr: float = 1e-3,
    device: str = "auto",
    seed: int = 0,
    checkpoint_every: int | None = None,
    validate: bool = True,
    max_steps: int | None = None,
    train_limit: int | None = None,
    progress: bool = True,
    root=None,
):
    """Train a registered family on a registered data set into the run folder ``out``.

    Resumes when ``out`` already holds a checkpoint of the same configuration.
    :returns: ``(module, TrainResult)``.
    """
    fam = get_family(family)
    cfg = fam.config(**(config or {}))
    train_set, valid, _ = load_splits(dataset, binarize, root)
    info = data_info(train_set)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_config = {
        "family": family,
        "config": dataclasses.asdict(cfg),
        "dataset": dataset,
        "binarize": _default_binarize(dataset, binarize),
        "num_pixels": info.num_pixels,
        "image_shape": list(info.image_shape),
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "max_steps": max_steps,
            "train_limit": train_limit,
        },
    }
    previous = out / RUN_CONFIG
    if (out / "checkpoint.pt").exists() and previous.exists():
        old = json.loads(previous.read_text())
        if {k: old.get(k) for k in ("family", "config", "dataset")} != {
            k: run_config[k] for k in ("family", "config", "dataset")
        }:
            raise ValueError(
                f"{out} holds a checkpoint of another run ({old.get('family')} "
                f"{old.get('config')} on {old.get('dataset')}); choose another --out"
            )
    previous.write_text(json.dumps(run_config, indent=1))
    torch.manual_seed(seed)  # module initialisation is part of the run's seed
    module = fam.build(cfg, info)
    learner = fam.learner(module, cfg, lr, steps_per_epoch=-(-len(train_set) // batch_size))
    result = train(
        learner,
        _subset(train_set, train_limit),
        epochs=epochs,
        batch_size=batch_size,
        val_data=valid if validate else None,
        device=device,
        seed=seed,
        out=out,
        checkpoint_every=checkpoint_every,
        max_steps=max_steps,
        progress=progress,
    )
    return module, result


def load_run(run: str | os.PathLike, device: str = "cpu"):
    """Rebuild the module of a run folder from its config and checkpoint.

    :returns: ``(family, config, module, run_config)``.
    """
    run = Path(run)
    path = run / RUN_CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{run} is not a pyrogen run folder: {path} is missing")
    rc = json.loads(path.read_text())
    fam = get_family(rc["family"])
    cfg = fam.config(**rc["config"])
    info = DataInfo(rc["num_pixels"], tuple(rc["image_shape"]), None, rc["dataset"])
    module = fam.build(cfg, info)
    state = load_checkpoint(run, map_location="cpu")
    module.load_state_dict(fam.module_state(state["learner"]))
    module.to(resolve_device(device))
    module.eval()
    return fam, cfg, module, rc


def evaluate_run(
    run: str | os.PathLike,
    num_samples: int | None = None,
    split: str = "test",
    batch_size: int = 100,
    limit: int | None = None,
    device: str = "auto",
    progress: bool = True,
    root=None,
):
    """Score a run by the evaluation protocol on ``split``; writes ``eval.json``.

    :returns: the estimate (e.g. :class:`~pyrogen.evaluate.LogLikelihood`).
    """
    fam, cfg, module, rc = load_run(run, device=device)
    ds = pdata.load(rc["dataset"], split, root=root, binarize=rc.get("binarize"))
    x = ds.tensor()
    if limit is not None:
        x = x[:limit]
    num_samples = num_samples or fam.default_eval_samples
    start = time.perf_counter()
    result = fam.log_likelihood(
        module, cfg, x, num_samples=num_samples, batch_size=batch_size, progress=progress
    )
    seconds = time.perf_counter() - start
    record = {
        "dataset": rc["dataset"],
        "split": split,
        "binarization": ds.binarization,
        "seconds": seconds,
        **result.to_dict(),
    }
    (Path(run) / "eval.json").write_text(json.dumps(record, indent=1))
    return result


def sample_run(
    run: str | os.PathLike, n: int = 64, out: str | os.PathLike | None = None, seed: int = 0
) -> str:
    """Draw ``n`` samples from a run's model and write them as a PNG grid."""
    from pyrogen.plotting import save_image_grid

    fam, cfg, module, rc = load_run(run)
    torch.manual_seed(seed)
    images = fam.sample(module, n)
    out = out or Path(run) / "samples.png"
    title = f"{rc['family']} samples ({rc['dataset']})"
    return save_image_grid(images, out, rc["image_shape"], title=title)


# ------------------------------------------------------------------------------ demo


def _locally_available(dataset: str) -> bool:
    spec = pdata.get_spec(dataset)
    return all(pdata.locate_file(f) is not None for f in spec.files)


DEMO = {
    "digits": {"epochs": 150, "eval_k": 5000, "batch_size": 100},
    "binarized_mnist": {"epochs": 5, "eval_k": 500, "batch_size": 100},
}


def demo(
    dataset: str = "auto",
    out: str | os.PathLike = "runs/demo",
    smoke: bool = False,
    device: str = "auto",
    progress: bool = True,
    epochs: int | None = None,
    eval_k: int | None = None,
) -> dict[str, Any]:
    """Train a one-layer IWAE (k = 5) on a default data set, print its test
    log-likelihood and write a sample grid: the README's first command."""
    if dataset == "auto":
        dataset = "binarized_mnist" if _locally_available("binarized_mnist") else "digits"
        why = "found locally" if dataset == "binarized_mnist" else "binarized MNIST not found"
        print(f"demo: data set {dataset} ({why}; choose with --dataset)")
    settings = DEMO.get(dataset, DEMO["binarized_mnist"])
    epochs = epochs or (1 if smoke else settings["epochs"])
    eval_k = eval_k or (50 if smoke else settings["eval_k"])
    out = Path(out)
    start = time.perf_counter()
    _, result = train_run(
        "vae",
        dataset,
        out,
        {"layers": 1, "objective": "iwae", "k": 5},
        epochs=epochs,
        batch_size=settings["batch_size"],
        device=device,
        max_steps=20 if smoke else None,
        validate=not smoke,
        progress=progress,
    )
    ll = evaluate_run(
        out, num_samples=eval_k, limit=200 if smoke else None, device=device, progress=progress
    )
    grid = sample_run(out, 64, out / "samples.png")
    seconds = time.perf_counter() - start
    print(ll.summary())
    print(f"sample grid: {grid}")
    print(f"demo finished in {seconds:.0f} s ({result.step} training steps)")
    return {"dataset": dataset, "log_likelihood": ll, "grid": grid, "seconds": seconds}


# ------------------------------------------------------------------------------ argparse


def _add_config_flags(parser: argparse.ArgumentParser, config_cls) -> None:
    group = parser.add_argument_group(f"{config_cls.__name__} (model options)")
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = f"{meta.get('help', '')} (default: {default})"
        if isinstance(default, bool):
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        else:
            group.add_argument(
                flag,
                type=type(default),
                default=default,
                choices=meta.get("choices"),
                help=help_text,
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
        _add_config_flags(fp, fam.config_cls)
        g = fp.add_argument_group("training")
        g.add_argument(
            "--dataset", default="binarized_mnist", help=f"one of {sorted(pdata.DATASETS)}"
        )
        g.add_argument(
            "--binarize",
            default="auto",
            choices=["auto", "dynamic", "stochastic", "threshold"],
            help="for grey-level sets (mnist, omniglot): auto = dynamic binarization",
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
            "--eval-k",
            type=int,
            default=0,
            help="after training, estimate the test log-likelihood with K samples (0: skip)",
        )
        g.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("evaluate", help="test log-likelihood of a trained run")
    p.add_argument("run", help="run folder written by `pyrogen train`")
    p.add_argument(
        "--k",
        type=int,
        default=None,
        help="importance samples per example (default: the family's protocol, 5000)",
    )
    p.add_argument("--split", default="test", help="data split to score")
    p.add_argument("--batch-size", type=int, default=100, help="examples per batch")
    p.add_argument("--limit", type=int, default=None, help="score only the first N examples")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "datasets":
        print(pdata.format_table(pdata.describe(args.root)))
        return 0
    if args.command == "train":
        fam = get_family(args.family)
        config = {f.name: getattr(args, f.name) for f in dataclasses.fields(fam.config_cls)}
        _, result = train_run(
            args.family,
            args.dataset,
            args.out,
            config,
            binarize=args.binarize,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            device=args.device,
            seed=args.seed,
            checkpoint_every=args.checkpoint_every,
            validate=not args.no_validate,
            max_steps=args.max_steps,
            progress=not args.no_progress,
        )
        print(
            f"trained {result.step} steps in {result.seconds:.0f} s; checkpoint {result.checkpoint}"
        )
        if args.eval_k:
            print(
                evaluate_run(
                    args.out, args.eval_k, device=args.device, progress=not args.no_progress
                ).summary()
            )
        return 0
    if args.command == "evaluate":
        result = evaluate_run(
            args.run,
            args.k,
            split=args.split,
            batch_size=args.batch_size,
            limit=args.limit,
            device=args.device,
            progress=not args.no_progress,
        )
        print(result.summary())
        return 0
    if args.command == "sample":
        print(sample_run(args.run, args.n, args.out, args.seed))
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
