"""The GPU check: run once on a machine with one GPU (under 8 minutes on a modern one).

``python benchmarks/gpu.py`` (default ``--device cuda``) does, in order:

1. **CUDA tests** -- the tests marked ``requires_cuda`` (``tests/conftest.py``), run with
   pytest on the files that have them; their outcome is recorded.
2. **Training steps** -- for every registered family, the step time of its learner (built
   as ``pyrogen train`` builds it, binarized MNIST or random binary images, batch 100) on the
   device, beside the hand-written PyTorch step where a benchmark has one: the IWAE step of
   ``iwae_speed.py`` (vae) and the reweighted wake-sleep step of ``helmholtz_speed.py``
   (helmholtz).
3. **Evaluation throughput** -- examples per second of each family's evaluation protocol
   estimator (importance sampling, exact, AIS) on the device, with a reduced sample count
   (stated in the table).
4. **RBM epoch** -- one PCD-1 epoch of ``rbm.py --speed`` through pyrogen and the bare loop.
5. **Sampling** -- NADE's recurrence against naive sampling and PixelCNN's cached sampler
   against recomputing the network (``autoregressive.py``).
6. **DDP, one process** -- ``torchrun --nproc_per_node 1 -m pyrogen.cli train vae ...``
   (nccl on CUDA, gloo on CPU), when :mod:`pyrogen.distributed` exists; otherwise a note.

It writes ``results/gpu.json`` and ``results/gpu.md``. ``--device cpu --smoke`` runs every
part end to end at tiny sizes on a CPU (the test suite does, so that the script cannot rot;
results then go to ``gpu_smoke.*``).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pyro
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import _common  # noqa: E402
from _common import machine, markdown_table  # noqa: E402

from pyrogen.registry import load_families  # noqa: E402
from pyrogen.runs import data_info  # noqa: E402


def _sync(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def time_steps(step, n: int, rounds: int, sync, warmup: int = 2) -> float:
    """Median seconds per call of ``step`` over ``rounds`` rounds of ``n`` calls."""
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times)


def data(num: int, device: torch.device, smoke: bool = False) -> tuple[torch.Tensor, str]:
    """``num`` binary images: binarized MNIST when found, else random; 8 x 8 random ones in
    a smoke run."""
    if smoke:
        g = torch.Generator().manual_seed(0)
        return (torch.rand(num, 64, generator=g) < 0.3).float().to(device), "random binary 8x8"
    try:
        from pyrogen.data import load

        x = load("binarized_mnist", "train", download=False).data[:num].clone()
        return x.reshape(num, -1).float().to(device), "binarized MNIST"
    except Exception:  # noqa: BLE001 -- no data folder: timing does not depend on the pixels
        g = torch.Generator().manual_seed(0)
        return (torch.rand(num, 784, generator=g) < 0.13).float().to(device), "random binary"


# ------------------------------------------------------------------ 1. CUDA tests


def cuda_tests(smoke: bool) -> dict:
    files = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").glob("test_*.py")
        if "requires_cuda" in p.read_text()
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "requires_cuda",
        "-p",
        "no:cacheprovider",
    ]
    if smoke:  # the command path, on one file (the others cost minutes of collection on CPU)
        files = sorted(files, key=lambda f: (ROOT / f).stat().st_size)[:1]
    start = time.perf_counter()
    proc = subprocess.run(command + files, cwd=ROOT, capture_output=True, text=True)
    last = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    return {
        "files": files,
        "returncode": proc.returncode,
        "summary": last[-1] if last else proc.stderr.strip()[-300:],
        "seconds": time.perf_counter() - start,
        "ok": proc.returncode in (0, 5),  # 5: nothing collected
    }


# ------------------------------------------------------------------ 2./3. families


def _reference_step(name: str, model, x: torch.Tensor, k: int):
    """The hand-written PyTorch step of a benchmark for this family, or None."""
    if name == "vae" and len(getattr(model, "encoders", ())) == 1:
        from iwae_speed import _hand_step

        hand = copy.deepcopy(model)
        return _hand_step(hand.encoders[0], hand.decoder, hand.parameters(), x, k), "iwae_speed"
    if name == "helmholtz":
        from helmholtz_speed import _helmholtz_layers, hand_step

        hand = copy.deepcopy(model)
        try:
            layers = _helmholtz_layers(hand)
        except (AttributeError, IndexError, TypeError):
            return None, None
        return hand_step(layers, hand.parameters(), x, k), "helmholtz_speed"
    return None, None


def families_table(device: torch.device, smoke: bool) -> list[dict]:
    sync = _sync(device)
    batch = 20 if smoke else 100
    x, source = data(batch, device, smoke)
    info = data_info(x.cpu())
    n, rounds, warmup = (1, 1, 0) if smoke else (10, 5, 2)
    rows = []
    for name, fam in load_families().items():
        row = {"family": name, "data": source, "batch_size": batch}
        if fam.conditional:  # trains on (image, context) pairs, not on these images
            row["skipped"] = f"conditional: needs {fam.default_dataset}"
            rows.append(row)
            print(f"  {name}: {row}", flush=True)
            continue
        try:
            cfg = fam.config(**(fam.smoke_config if smoke else {}))
            torch.manual_seed(0)
            model = fam.build(cfg, info).to(device)
            learner = fam.learner(model, cfg, fam.default_lr)
            learner.to(device)
            if hasattr(learner, "set_steps_per_epoch"):
                learner.set_steps_per_epoch(1000)
            row["ms_per_step"] = (
                time_steps(lambda lr=learner: lr.step(x), n, rounds, sync, warmup) * 1e3
            )
            k = getattr(cfg, "num_particles", 5)
            step, source_ref = _reference_step(name, model, x, k)
            if step is not None:
                row["hand_ms_per_step"] = time_steps(step, n, rounds, sync, warmup) * 1e3
                row["ratio_to_hand"] = row["ms_per_step"] / row["hand_ms_per_step"]
                row["reference"] = source_ref
            model.eval()
            options = {}
            if fam.sample_option is not None:
                options[fam.sample_option] = 10 if smoke else 100
                row["eval_samples"] = options[fam.sample_option]
            if fam.kind == "density":
                options["progress"] = False
            if name in ("rbm", "dbm"):
                options.pop("progress", None)
                options["betas"] = 100 if smoke else 1000
                row["eval_betas"] = options["betas"]
            sync()
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fam.evaluate(model, cfg, x, **options)
            sync()
            row["eval_examples_per_s"] = batch / (time.perf_counter() - start)
        except Exception as error:  # noqa: BLE001 -- one family's failure is a result
            row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
        rows.append(row)
        print(f"  {name}: {row}", flush=True)
    return rows


# ------------------------------------------------------------------ 4. RBM epoch


def rbm_epoch(device: torch.device, smoke: bool) -> dict:
    from rbm import BATCH, bare_trainer, interleaved_epochs, pyrogen_trainer

    num = 2 * BATCH if smoke else None
    x, source = data(num, device, smoke) if smoke else _full_mnist(device)
    batches = x.shape[0] // BATCH
    trainers = {"pyrogen": pyrogen_trainer(x), "bare": bare_trainer(x)}
    for run in trainers.values():
        run(0, min(batches, 5))
    spent = interleaved_epochs(trainers, batches, 1 if smoke else 4, _sync(device))
    return {
        "images": x.shape[0],
        "data": source,
        "pyrogen_seconds": spent["pyrogen"],
        "bare_seconds": spent["bare"],
        "ratio": spent["pyrogen"] / spent["bare"],
    }


def _full_mnist(device):
    try:
        from pyrogen.data import load

        return load("binarized_mnist", "train", download=False).data.float().to(device), (
            "binarized MNIST"
        )
    except Exception:  # noqa: BLE001
        return data(50_000, device)


# ------------------------------------------------------------------ 5. sampling


def sampling(device: torch.device, smoke: bool) -> dict:
    from autoregressive import nade_sampling, pixelcnn_sampling

    fams = load_families()
    x, _ = data(20, device, smoke)
    info = data_info(x.cpu())
    out = {}
    torch.manual_seed(0)
    nade_cfg = fams["nade"].config(**({"hidden": 8} if smoke else {"hidden": 500}))
    nade = fams["nade"].build(nade_cfg, info).to(device)
    with torch.no_grad():
        out["nade"] = nade_sampling(nade, 5 if smoke else 500, 1 if smoke else 3)
    cfg = {"hidden": 8, "layers": 1} if smoke else {"hidden": 32, "layers": 6}
    pixelcnn = fams["pixelcnn"].build(fams["pixelcnn"].config(**cfg), info).to(device)
    with torch.no_grad():
        out["pixelcnn"] = pixelcnn_sampling(pixelcnn, 2 if smoke else 64)
    return out


# ------------------------------------------------------------------ 6. DDP


def ddp_one_process(device: torch.device, smoke: bool) -> dict:
    if importlib.util.find_spec("pyrogen.distributed") is None:
        return {"skipped": "pyrogen.distributed does not exist yet"}
    backend = "nccl" if device.type == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as out:
        dataset = "digits" if smoke else "binarized_mnist"
        steps = 3 if smoke else 100
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "1",
            "--master_port",
            str(29_500 + os.getpid() % 1000),
            "-m",
            "pyrogen.cli",
            "train",
            "vae",
            "--dataset",
            dataset,
            "--epochs",
            "1",
            "--max-steps",
            str(steps),
            "--no-validate",
            "--no-progress",
            "--device",
            device.type,
            "--out",
            str(Path(out) / "ddp"),
        ]
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return {
            "backend": backend,
            "steps": steps,
            "returncode": proc.returncode,
            "seconds": seconds,
            "checkpoint": (Path(out) / "ddp" / "checkpoint.pt").exists(),
            "tail": tail,
            "ok": proc.returncode == 0,
        }


# ------------------------------------------------------------------ report


def markdown(record: dict) -> str:
    m = record["machine"]
    lines = [
        f"# GPU check ({record['device']}{', smoke' if record['smoke'] else ''}: "
        f"{m.get('gpu') or m['cpu']}, torch {m['torch']})",
        "",
    ]
    tests = record.get("cuda_tests")
    if tests:
        lines += [f"CUDA tests ({len(tests['files'])} files): {tests['summary']}", ""]
    rows = []
    for r in record.get("families", []):
        rows.append(
            [
                r["family"],
                r.get("ms_per_step", r.get("error", r.get("skipped", "-"))),
                r.get("hand_ms_per_step", "-"),
                r.get("ratio_to_hand", "-"),
                r.get("eval_examples_per_s", "-"),
                r.get("eval_samples", "-"),
            ]
        )
    header = ["family", "ms/step", "hand-written ms/step", "ratio", "eval examples/s", "samples"]
    lines += [markdown_table(header, rows), ""]
    rbm = record.get("rbm_epoch")
    if rbm:
        lines.append(
            f"RBM PCD-1 epoch ({rbm['images']} images): pyrogen {rbm['pyrogen_seconds']:.2f} s, "
            f"bare {rbm['bare_seconds']:.2f} s (ratio {rbm['ratio']:.2f})"
        )
    s = record.get("sampling", {})
    if "nade" in s:
        n = s["nade"]
        lines.append(
            f"NADE sampling ({n['num_samples']} samples, H = {n['hidden']}): recurrence "
            f"{n['recurrence_seconds']:.3f} s, naive {n['naive_seconds']:.3f} s"
        )
    if "pixelcnn" in s:
        p = s["pixelcnn"]
        lines.append(
            f"PixelCNN sampling ({p['num_samples']} samples): cached {p['cached_seconds']:.3f} s, "
            f"naive {p['naive_seconds']:.3f} s"
        )
    ddp = record.get("ddp", {})
    if "skipped" in ddp:
        lines.append(f"DDP (1 process): skipped: {ddp['skipped']}")
    elif ddp:
        lines.append(
            f"DDP (1 process, {ddp['backend']}): {ddp['steps']} steps, exit {ddp['returncode']}, "
            f"{ddp['seconds']:.1f} s (including start-up)"
        )
    lines.append(f"\nTotal: {record['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite)")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["tests", "families", "rbm", "sampling", "ddp"],
        help="parts to leave out",
    )
    parser.add_argument("--results", default=None, help="results folder (default results/)")
    parser.add_argument("--name", default=None, help="results file name (gpu / gpu_smoke)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu --smoke to check the script", file=sys.stderr)
        return 2
    pyro.enable_validation(False)
    start = time.perf_counter()
    record = {"device": str(device), "smoke": args.smoke, "machine": machine()}
    parts = [
        ("tests", "cuda_tests", lambda: cuda_tests(args.smoke)),
        ("families", "families", lambda: families_table(device, args.smoke)),
        ("rbm", "rbm_epoch", lambda: rbm_epoch(device, args.smoke)),
        ("sampling", "sampling", lambda: sampling(device, args.smoke)),
        ("ddp", "ddp", lambda: ddp_one_process(device, args.smoke)),
    ]
    for part, key, fn in parts:
        if part in args.skip:
            continue
        t = time.perf_counter()
        print(f"[{part}]", flush=True)
        record[key] = fn()
        print(f"[{part}] {time.perf_counter() - t:.1f} s", flush=True)
    record["seconds"] = time.perf_counter() - start
    text = markdown(record)
    print(text)
    if args.results:
        _common.RESULTS = Path(args.results)
    name = args.name or ("gpu_smoke" if args.smoke else "gpu")
    js, md = _common.write_results(name, record, text)
    print(f"wrote {js} and {md}")
    failed = [k for k in ("cuda_tests", "ddp") if record.get(k, {}).get("ok") is False]
    errors = [r["family"] for r in record.get("families", []) if "error" in r]
    if failed or errors:
        print(f"problems: {failed + errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
