"""benchmarks/conv_dbn.py in smoke mode, into a temporary results folder: it times every
layer of the four data sets and classifies with CDBN features whose size follows from the
layer shapes."""

import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_smoke_run_writes_timing_and_accuracy_tables(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.syspath_prepend(str(BENCH))
    import _common
    import conv_dbn
    import features

    from pyrogen.data import DatasetNotFoundError

    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    monkeypatch.setattr(features, "C_GRID", features.C_GRID)  # smoke mode narrows it
    try:
        assert conv_dbn.main(["--smoke"]) == 0
    except (DatasetNotFoundError, FileNotFoundError) as e:  # no data folder
        pytest.skip(str(e))
    record = json.loads((tmp_path / "conv_dbn_smoke.json").read_text())
    table = (tmp_path / "conv_dbn_smoke.md").read_text()
    sets = ["natural images", "Olivetti faces", "MNIST", "Caltech-101 Silhouettes"]
    # the faces CDBN reuses the natural-image layer 1 (as in Lee et al.): one row for it
    assert [(r["data"], r["layer"]) for r in record["timing"]] == [
        (s, f"layer{k}") for s in sets for k in (1, 2) if (s, k) != ("Olivetti faces", 1)
    ]
    shapes = {(r["data"], r["layer"]): r["input_shape"] for r in record["timing"]}
    assert shapes["natural images", "layer2"] == [24, 27, 27]  # 24 maps of (63-10+1)/2
    assert shapes["Olivetti faces", "layer2"] == [24, 27, 27]
    assert shapes["MNIST", "layer2"] == [16, 11, 11]  # 16 maps of (28-7+1)/2
    for r in record["timing"]:
        assert r["seconds"] > 0 and 0 <= r["activation"] <= 1
    for name in sets[2:]:
        rows = record["accuracy"][name]
        assert rows["raw pixels"]["dim"] == 784
        assert rows["CDBN layers 1+2"]["dim"] == 16 * 11 * 11 + 40 * 4 * 4
        for row in rows.values():
            assert 0 <= row["test"] <= 1
    assert "| CDBN layers 1+2 |" in table and "| natural images | layer1 |" in table
