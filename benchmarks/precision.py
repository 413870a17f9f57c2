"""Training-step time with ``--precision bf16`` and ``--compile`` against the default (fp32,
eager), in the same run.

Families built and trained as ``pyrogen train`` builds them (registry entry, its learner):

* **vae** -- IWAE, k = 5, the 784-200-200-50 architecture of Burda et al. (2015), batch 100;
* **nade** -- NADE, H = 500, batch 20 (the family's recipe).

Settings: ``fp32`` (default), ``bf16`` (bfloat16 autocast inside the networks:
:mod:`pyrogen.accelerate`), ``compile`` (``torch.compile`` of the networks, fp32) and
``bf16+compile``. Each contender starts from the same weights; compilation happens in the
warm-up steps (its time is reported separately). Each round runs every contender for
``--steps`` steps in a rotated order; step times are medians over rounds, and each ratio is
the median of per-round ratios against fp32.

Whether bf16 pays depends on the hardware: CPUs without native bfloat16 arithmetic (no
AVX512-BF16 / AMX) emulate it, and the casts cost more than they save at these sizes.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results  # noqa: E402

from pyrogen.accelerate import accelerate  # noqa: E402
from pyrogen.registry import get_family  # noqa: E402
from pyrogen.runs import data_info  # noqa: E402

SETTINGS = {
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "compile": ("fp32", True),
    "bf16+compile": ("bf16", True),
}
#: family -> (config, batch size)
FAMILIES = {"vae": ({"layers": 1, "num_particles": 5}, 100), "nade": ({"hidden": 500}, 20)}


def data_batch(batch_size: int, device) -> tuple[torch.Tensor, str]:
    try:
        from pyrogen.data import load

        x = load("binarized_mnist", "train", download=False).data[:batch_size].clone()
        return x.reshape(batch_size, -1).float().to(device), "binarized MNIST (first batch)"
    except Exception:  # noqa: BLE001 -- no data folder: timing does not depend on the pixels
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(batch_size, 784, generator=g) < 0.13).float()
        return x.to(device), "random binary 784-pixel images"


def contenders(family: str, config: dict, x: torch.Tensor, settings, lr: float | None = None):
    """``{setting: step()}``: the family's learner on copies of one model, each with its
    precision / compile setting applied (``settings`` names keys of :data:`SETTINGS`)."""
    fam = get_family(family)
    cfg = fam.config(**config)
    info = data_info(x.cpu())
    torch.manual_seed(0)
    base = fam.build(cfg, info).to(x.device)
    steps = {}
    for name in settings:
        model = copy.deepcopy(base)
        precision, compile_ = SETTINGS[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            accelerate(model, precision, compile_, name=family)
        learner = fam.learner(model, cfg, lr or fam.default_lr)
        learner.to(x.device)
        steps[name] = lambda learner=learner: learner.step(x)
    return steps


def measure(steps: dict, n_steps: int, rounds: int, warmup: int, sync=None) -> tuple[dict, dict]:
    """``(times, warmup_seconds)``: per-round seconds per step of each contender, and the
    seconds each spent in its warm-up (where compilation happens)."""
    sync = sync or (lambda: None)
    warm = {}
    for name, fn in steps.items():
        start = time.perf_counter()
        for _ in range(warmup):
            fn()
        sync()
        warm[name] = time.perf_counter() - start
    names = list(steps)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            sync()
            start = time.perf_counter()
            for _ in range(n_steps):
                steps[name]()
            sync()
            times[name].append((time.perf_counter() - start) / n_steps)
    return times, warm


def run(families=("vae", "nade"), settings=tuple(SETTINGS), rounds=5, steps=5, device="cpu"):
    """One row per family: ms per step of each setting, ratios to fp32, warm-up seconds."""
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    pyro.enable_validation(False)
    rows = []
    for family in families:
        config, batch = FAMILIES[family]
        x, source = data_batch(batch, device)
        torch._dynamo.reset()
        times, warm = measure(contenders(family, config, x, settings), steps, rounds, 3, sync)
        rows.append(
            {
                "family": family,
                "config": config,
                "batch_size": batch,
                "ms_per_step": {n: statistics.median(t) * 1e3 for n, t in times.items()},
                "ratio_to_fp32": {
                    n: statistics.median(a / b for a, b in zip(t, times["fp32"]))
                    for n, t in times.items()
                },
                "warmup_seconds": warm,
                "data": source,
            }
        )
    return rows


def markdown(rows: list[dict], info: dict) -> str:
    settings = list(rows[0]["ms_per_step"])
    header = ["family", "batch"] + [f"{s} ms/step" for s in settings]
    header += [f"{s} / fp32" for s in settings if s != "fp32"]
    table = []
    for r in rows:
        line = [r["family"], r["batch_size"]] + [r["ms_per_step"][s] for s in settings]
        line += [r["ratio_to_fp32"][s] for s in settings if s != "fp32"]
        table.append(line)
    warm = "; ".join(
        f"{r['family']}: " + ", ".join(f"{s} {v:.1f} s" for s, v in r["warmup_seconds"].items())
        for r in rows
    )
    return "\n".join(
        [
            f"# Training step: --precision / --compile ({info.get('gpu') or info['cpu']}, "
            f"{info['torch_threads']} threads, torch {info['torch']})",
            "",
            markdown_table(header, table),
            "",
            f"Warm-up (3 steps, including compilation): {warm}.",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--rounds", type=int, default=5, help="measurement rounds")
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--name", default="precision_cpu", help="results file name")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args.families, args.settings, args.rounds, args.steps, args.device)
    info = machine()
    text = markdown(rows, info)
    print(text)
    write_results(args.name, {"machine": info, "rows": rows}, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
