"""Step time of pyrogen's ReweightedWakeSleep against Pyro's and a hand-written PyTorch step.

A 784-200-200 sigmoid belief net (Bernoulli layers h2 -> h1 -> x, recognition x -> h1 -> h2,
plain sigmoid conditionals), K = 5 particles, batch 100, the same initial weights and data
batch for every contender; one training step is forward + backward + Adam (lr 1e-3):

* **hand-written**: recognition samples, the six Bernoulli log-densities
  (``binary_cross_entropy_with_logits``), the log-weights, the wake-p loss
  :math:`-\\log \\frac1K \\sum_k w_k` and the wake-q loss :math:`-\\sum_k \\tilde w_k
  \\log q(h_k \\mid x)` written out in PyTorch (the floor; it checks nothing), torch Adam;
* **pyrogen RWS**: ``pyro.infer.SVI(model, guide, pyro.optim.Adam, pyrogen.infer.
  ReweightedWakeSleep(5))`` -- ``svi.step(x)``;
* **Pyro RWS**: the same with ``pyro.infer.ReweightedWakeSleep(num_particles=5)``
  (vectorized particles, Pyro's defaults otherwise).

The model is a plain Pyro model as a new user writes it (``pyro.module``, ``pyro.plate``,
``dist.Bernoulli(logits=...).to_event(1)``); where ``pyrogen.models.HelmholtzMachine`` is
available the same three contenders also run on it (its own fused Bernoulli sites). Each
table is measured with Pyro's validation **on** (Pyro's default) and **off**; each round runs
every contender for ``steps`` steps in a rotated order, step times are medians over rounds
and ratios medians of per-round ratios.

Target (issue 10): pyrogen RWS / hand-written <= 1.15 with validation on, and pyrogen faster
than Pyro's ReweightedWakeSleep (which a new user measured at 1.32x hand-written with
validation on, 1.10x off).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer.util import is_validation_enabled
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, markdown_table, write_results  # noqa: E402

from pyrogen.infer import ReweightedWakeSleep  # noqa: E402

TARGET = 1.15
SIZES = (784, 200, 200)


def data_batch(batch_size: int) -> tuple[torch.Tensor, str]:
    try:
        from pyrogen.data import load

        x = load("binarized_mnist", "train", download=False).data[:batch_size].clone()
        return x.reshape(batch_size, -1).float(), "binarized MNIST (first training batch)"
    except Exception:  # no data folder: timing does not depend on the pixel values
        g = torch.Generator().manual_seed(0)
        return (torch.rand(batch_size, 784, generator=g) < 0.13).float(), "random binary"


class UserSBN(nn.Module):
    """A 784-200-200 sigmoid belief net and its recognition net, as a new user writes it."""

    def __init__(self, sizes=SIZES, name="sbn") -> None:
        super().__init__()
        d, h1, h2 = sizes
        self.name = name
        self.top = nn.Parameter(torch.zeros(h2))
        self.p1 = nn.Linear(h2, h1)  # p(h1 | h2)
        self.px = nn.Linear(h1, d)  # p(x | h1)
        self.q1 = nn.Linear(d, h1)  # q(h1 | x)
        self.q2 = nn.Linear(h1, h2)  # q(h2 | h1)

    def model(self, x, observations=None):
        pyro.module(self.name, self)
        with pyro.plate("data", x.shape[0]):
            top = self.top.expand(x.shape[0], -1)
            h2 = pyro.sample("h2", dist.Bernoulli(logits=top).to_event(1))
            h1 = pyro.sample("h1", dist.Bernoulli(logits=self.p1(h2)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.px(h1)).to_event(1), obs=x)

    def guide(self, x, observations=None):
        pyro.module(self.name, self)
        if observations is not None:
            x = observations["x"]
        with pyro.plate("data", x.shape[-2]):
            h1 = pyro.sample("h1", dist.Bernoulli(logits=self.q1(x)).to_event(1))
            pyro.sample("h2", dist.Bernoulli(logits=self.q2(h1)).to_event(1))

    # the layers as (logits function) for the hand-written step
    def layers(self):
        return {
            "top": lambda h: self.top,
            "p1": self.p1,
            "px": self.px,
            "q1": self.q1,
            "q2": self.q2,
        }


def _helmholtz_layers(m) -> dict:
    gen, rec = m.generative, m.recognition
    return {
        "top": lambda h: gen[2].logits_for(None),
        "p1": gen[1].logits_for,
        "px": gen[0].logits_for,
        "q1": rec[0].logits_for,
        "q2": rec[1].logits_for,
    }


def _bernoulli_lp(logits, value):
    return -F.binary_cross_entropy_with_logits(
        logits.expand_as(value), value, reduction="none"
    ).sum(-1)


def hand_step(layers: dict, params, x, k: int):
    """One reweighted wake-sleep step (wake-p and wake-q) written directly in PyTorch."""
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        l1 = layers["q1"](x)
        h1 = torch.bernoulli(torch.sigmoid(l1).expand((k,) + l1.shape))
        l2 = layers["q2"](h1)
        h2 = torch.bernoulli(torch.sigmoid(l2))
        log_q = _bernoulli_lp(l1, h1) + _bernoulli_lp(l2, h2)
        log_p = (
            _bernoulli_lp(layers["top"](h2), h2)
            + _bernoulli_lp(layers["p1"](h2), h1)
            + _bernoulli_lp(layers["px"](h1), x.expand((k,) + x.shape))
        )
        log_w = log_p - log_q.detach()
        wake_p = -(torch.logsumexp(log_w, 0) - math.log(k)).sum()
        w = torch.softmax(log_w.detach(), 0)
        wake_q = -(w * log_q).sum()
        opt.zero_grad()
        (wake_p + wake_q).backward()
        opt.step()

    return step


def svi_step(loss, model, guide, x):
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss)
    return lambda: svi.step(x)


def contenders(base, x, k: int, kind: str) -> dict:
    nets = {name: copy.deepcopy(base) for name in ("pyrogen", "pyro", "hand")}
    if kind == "user":
        for name, net in nets.items():
            net.name = f"sbn_{name}"
        hand_layers = nets["hand"].layers()
    else:
        for name, net in nets.items():
            net._pyro_name = f"helmholtz_{name}"
        hand_layers = _helmholtz_layers(nets["hand"])
    p, q = nets["pyrogen"], nets["pyro"]
    return {
        "pyrogen": svi_step(ReweightedWakeSleep(k, max_plate_nesting=1), p.model, p.guide, x),
        "pyro": svi_step(
            pyro.infer.ReweightedWakeSleep(num_particles=k, max_plate_nesting=1),
            q.model,
            q.guide,
            x,
        ),
        "hand": hand_step(hand_layers, nets["hand"].parameters(), x, k),
    }


def measure(steps: dict, n_steps: int, rounds: int, warmup: int) -> dict:
    """Seconds per step of each contender (``steps``: name -> a function taking one step),
    one entry per round: ``warmup`` untimed steps each, then ``rounds`` rounds of ``n_steps``
    steps of every contender in a rotated order (also used by ``benchmarks/gan.py``)."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    names = list(steps)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            for _ in range(n_steps):
                steps[name]()
            times[name].append((time.perf_counter() - start) / n_steps)
    return times


def _ratio(times, a, b) -> float:
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def _bases() -> dict:
    torch.manual_seed(0)
    bases = {"user": UserSBN()}
    try:
        from pyrogen.models.helmholtz import HelmholtzMachine

        torch.manual_seed(0)
        bases["helmholtz"] = HelmholtzMachine(SIZES)
    except Exception:  # noqa: BLE001 -- the model is optional here
        pass
    return bases


def speed_table(
    quick: bool = False,
    *,
    k: int = 5,
    batch_size: int = 100,
    rounds: int | None = None,
    steps: int | None = None,
    validation: tuple[str, ...] = ("on", "off"),
) -> list[dict]:
    """Time one RWS training step of each contender (module docs).

    :param bool quick: a few rounds of a few steps (smoke runs; noisy ratios).
    :returns: one dict per (model, validation setting): ``model``, ``validation``, ``k``,
        ``batch_size``, ``ms_per_step`` (``pyrogen``, ``pyro``, ``hand``), ``ratios``
        (``pyrogen/hand``, ``pyro/hand``, ``pyrogen/pyro``), ``target`` and ``met`` (for the
        validation-on rows), ``rounds``, ``steps_per_round``, ``data``.
    """
    rounds = rounds or (3 if quick else 9)
    steps = steps or (2 if quick else 10)
    x, source = data_batch(batch_size)
    logging.getLogger("pyro").setLevel(logging.WARNING)
    was = is_validation_enabled()
    results = []
    bases = _bases()
    try:
        for setting in validation:
            pyro.enable_validation(setting == "on")
            for kind, base in bases.items():
                pyro.clear_param_store()
                times = measure(contenders(base, x, k, kind), steps, rounds, warmup=2)
                med = {n: statistics.median(t) * 1e3 for n, t in times.items()}
                ratios = {
                    "pyrogen/hand": _ratio(times, "pyrogen", "hand"),
                    "pyro/hand": _ratio(times, "pyro", "hand"),
                    "pyrogen/pyro": _ratio(times, "pyrogen", "pyro"),
                }
                on = setting == "on"
                met = None
                if on:
                    met = ratios["pyrogen/hand"] <= TARGET and ratios["pyrogen/pyro"] < 1
                results.append(
                    {
                        "model": kind,
                        "validation": on,
                        "k": k,
                        "batch_size": batch_size,
                        "ms_per_step": med,
                        "ratios": ratios,
                        "target": TARGET if on else None,
                        "met": met,
                        "rounds": rounds,
                        "steps_per_round": steps,
                        "data": source,
                    }
                )
    finally:
        pyro.enable_validation(was)
        pyro.clear_param_store()
    return results


LABELS = {"user": "user SBN (Pyro dists)", "helmholtz": "HelmholtzMachine"}


def markdown(results: list[dict]) -> str:
    header = [
        "model",
        "validation",
        "pyrogen RWS (ms)",
        "Pyro RWS (ms)",
        "hand-written (ms)",
        "pyrogen / hand",
        "Pyro / hand",
        "pyrogen / Pyro",
        "target",
        "met",
    ]
    rows = []
    for r in results:
        ms, ra = r["ms_per_step"], r["ratios"]
        rows.append(
            [
                LABELS.get(r["model"], r["model"]),
                "on" if r["validation"] else "off",
                ms["pyrogen"],
                ms["pyro"],
                ms["hand"],
                ra["pyrogen/hand"],
                ra["pyro/hand"],
                ra["pyrogen/pyro"],
                f"<= {r['target']}, < Pyro" if r["target"] else "-",
                "-" if r["met"] is None else ("yes" if r["met"] else "NO"),
            ]
        )
    return markdown_table(header, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (smoke run)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--name", default="helmholtz_speed", help="results file name")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = speed_table(args.quick, rounds=args.rounds, steps=args.steps)
    m = machine()
    first = results[0]
    intro = (
        f"CPU ({m['cpu']}, {m['torch_threads']} threads, torch {m['torch']}, pyro "
        f"{pyro.__version__}); data: {first['data']}; SBN 784-200-200, K = {first['k']}, "
        f"batch {first['batch_size']}; median of {first['rounds']} rounds of "
        f"{first['steps_per_round']} steps, ratios are medians of per-round ratios.\n"
        f"Target (validation on): pyrogen / hand <= {TARGET} and pyrogen / Pyro < 1."
    )
    text = intro + "\n\n" + markdown(results)
    print(text)
    js, md = write_results(args.name, {"machine": m, "results": results}, text)
    print(f"\nwrote {js} and {md}")
    return 0 if all(r["met"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
