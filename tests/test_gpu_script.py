"""``benchmarks/gpu.py --device cpu --smoke`` runs end to end, so that the GPU check a
maintainer runs once cannot rot between GPU runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_script_smoke_on_cpu(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--device", "cpu", "--smoke"]
        + ["--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert record["smoke"] and record["device"] == "cpu"
    assert record["cuda_tests"]["ok"] and record["cuda_tests"]["files"]
    from pyrogen.registry import load_families

    rows = {r["family"]: r for r in record["families"]}
    assert set(rows) == set(load_families())
    for name, row in rows.items():
        assert "error" not in row, (name, row["error"])
        if load_families()[name].conditional:  # (image, caption) families need their data
            assert row["skipped"].startswith("conditional"), row
            continue
        assert row["ms_per_step"] > 0 and row["eval_examples_per_s"] > 0
    assert rows["vae"]["reference"] == "iwae_speed" and rows["vae"]["hand_ms_per_step"] > 0
    assert rows["helmholtz"]["reference"] == "helmholtz_speed"
    assert record["rbm_epoch"]["pyrogen_seconds"] > 0
    assert record["sampling"]["nade"]["same_samples"]
    ddp = record["ddp"]
    assert "skipped" in ddp or (ddp["ok"] and ddp["checkpoint"]), ddp
    table = (tmp_path / "gpu_smoke.md").read_text()
    assert "| family |" in table and "RBM PCD-1 epoch" in table
