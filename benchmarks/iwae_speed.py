"""Step time of pyrogen's IWAE against Pyro's RenyiELBO and a hand-written PyTorch step.

Same model (784-200-200-50, tanh, Burda et al. 2015), same initial weights, same data batch
(batch 100), same optimizer (torch Adam, lr 1e-3), k = 5 and k = 50, measured in one run:

* **pyrogen**: ``IWAE(k)(vae.model, vae.guide)`` -- an ordinary Pyro model/guide pair --
  with ``torch.optim.Adam``;
* **Pyro RenyiELBO**: ``RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True)
  .loss_and_grads`` on the same model/guide, same optimizer;
* **hand-written**: encoder, reparameterized sample, decoder, log-weights and logsumexp
  written out in PyTorch (the floor for this architecture).

Pyro's validation (argument and support checks, on by default) is turned off for both Pyro
contenders, as one does for speed. Each round runs every contender for ``--steps`` steps
in a rotated order; the reported step time is the median over rounds, and the ratio is the
median of the per-round ratios (so slow drifts of the machine cancel).

Targets (issue #2): pyrogen / hand-written <= 1.15 at k = 5 and <= 1.05 at k = 50 (CPU).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results  # noqa: E402

from pyrogen.infer import IWAE  # noqa: E402
from pyrogen.models import VAE  # noqa: E402

TARGETS = {5: 1.15, 50: 1.05}


def data_batch(batch_size: int) -> tuple[torch.Tensor, str]:
    try:
        from pyrogen.data import load

        x = load("binarized_mnist", "train", download=False).data[:batch_size].clone()
        return x, "binarized MNIST (first training batch)"
    except Exception:  # no data folder: timing does not depend on the pixel values
        g = torch.Generator().manual_seed(0)
        return (torch.rand(batch_size, 784, generator=g) < 0.13).float(), "random binary"


def hand_written_step(vae: VAE, opt: torch.optim.Optimizer, x: torch.Tensor, k: int):
    """One IWAE step written directly in PyTorch (Burda et al. 2015, eq. 8)."""
    encoder, decoder = vae.encoders[0], vae.decoder

    def step():
        loc, scale = encoder(x)
        eps = torch.randn((k,) + loc.shape, dtype=loc.dtype, device=loc.device)
        z = loc + scale * eps
        logits = decoder(z)
        log_px_z = -F.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
        log_pz = -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        log_qz = (-0.5 * eps * eps - scale.log()).sum(-1) - 0.5 * z.shape[-1] * math.log(
            2 * math.pi
        )
        log_w = log_px_z + log_pz - log_qz
        loss = -(torch.logsumexp(log_w, 0) - math.log(k)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def pyrogen_step(vae, opt, x, k):
    loss_fn = IWAE(k, max_plate_nesting=1)(vae.model, vae.guide)

    def step():
        opt.zero_grad()
        loss_fn(x).backward()
        opt.step()

    return step


def renyi_step(vae, opt, x, k):
    renyi = pyro.infer.RenyiELBO(
        alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=2
    )

    def step():
        opt.zero_grad()
        renyi.loss_and_grads(vae.model, vae.guide, x)
        opt.step()

    return step


def measure(steps: dict, n_steps: int, rounds: int, warmup: int, device) -> dict:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    sync()
    names = list(steps)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            for _ in range(n_steps):
                steps[name]()
            sync()
            times[name].append((time.perf_counter() - start) / n_steps)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[5, 50], help="particle counts")
    parser.add_argument("--batch-size", type=int, default=100, help="examples per step")
    parser.add_argument("--rounds", type=int, default=15, help="measurement rounds")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per round (default: 20 at k<=5, 5 above)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--name", default=None, help="results file name (default iwae_speed_<device>)"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    pyro.enable_validation(False)
    x, source = data_batch(args.batch_size)
    x = x.to(device)
    torch.manual_seed(0)
    base = VAE.burda(784, layers=1, pixel_mean=x.mean(0).cpu()).to(device)
    rows, record = [], {"machine": machine(), "data": source, "device": str(device), "results": []}
    for k in args.k:
        contenders = {}
        for name, factory in (
            ("pyrogen", pyrogen_step),
            ("renyi", renyi_step),
            ("hand", hand_written_step),
        ):
            vae = copy.deepcopy(base)
            vae._pyro_name = f"{name}{k}"  # separate param-store names for the Pyro runs
            opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
            contenders[name] = factory(vae, opt, x, k)
        n_steps = args.steps or (20 if k <= 5 else 5)
        times = measure(contenders, n_steps, args.rounds, warmup=5, device=device)
        med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        ratio = {
            name: statistics.median(a / b for a, b in zip(times[name], times["hand"]))
            for name in ("pyrogen", "renyi")
        }
        target = TARGETS.get(k)
        ok = "yes" if target is None or ratio["pyrogen"] <= target else "NO"
        rows.append(
            [
                k,
                med["pyrogen"],
                med["renyi"],
                med["hand"],
                ratio["pyrogen"],
                ratio["renyi"],
                f"<= {target}" if target else "-",
                ok,
            ]
        )
        record["results"].append(
            {
                "k": k,
                "ms_per_step": med,
                "ratio_to_hand": ratio,
                "target": target,
                "rounds": args.rounds,
                "steps_per_round": n_steps,
            }
        )
    header = [
        "k",
        "pyrogen IWAE (ms/step)",
        "Pyro RenyiELBO (ms/step)",
        "hand-written PyTorch (ms/step)",
        "pyrogen / hand",
        "RenyiELBO / hand",
        "target",
        "met",
    ]
    m = record["machine"]
    title = (
        f"IWAE step time, 784-200-200-50, batch {args.batch_size}, {device.type.upper()} "
        f"({m.get('gpu', m['cpu'])}, {m['torch_threads']} threads, torch {m['torch']}); "
        f"data: {source}; median of {args.rounds} rounds"
    )
    table = title + "\n\n" + markdown_table(header, rows)
    print(table)
    js, md = write_results(args.name or f"iwae_speed_{device.type}", record, table)
    print(f"\nwrote {js} and {md}")
    return 0 if all(r[-1] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
