"""The training engine: exact resume, the NaN guard, atomic checkpoints, devices."""

import os

import pytest
import torch

import pyrogen.train as engine
from pyrogen.data import ImageDataset
from pyrogen.infer import IWAE
from pyrogen.models import VAE
from pyrogen.train import SVILearner, TrainingDiverged, load_checkpoint, resolve_device, train


def _data(n=120, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) < 0.3).float()


def _learner(seed=0, d=16):
    torch.manual_seed(seed)
    vae = VAE(d, (3,), ((12,),))
    return SVILearner(vae, IWAE(5, max_plate_nesting=1), lr=1e-2)


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    for key, value in sa["module"].items():
        assert torch.equal(value, sb["module"][key]), key
    oa, ob = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert oa.keys() == ob.keys()
    for i in oa:
        for key in oa[i]:
            assert torch.equal(torch.as_tensor(oa[i][key]), torch.as_tensor(ob[i][key])), (i, key)


def _dynamic_dataset():
    grey = torch.rand(90, 16, generator=torch.Generator().manual_seed(1))
    return ImageDataset(grey, image_shape=(4, 4), name="toy", binarization="dynamic")


@pytest.mark.parametrize("data_kind", ["tensor", "dynamic"])
def test_resume_is_bitwise_exact(tmp_path, data_kind):
    # N steps straight == N/2 steps, checkpoint, fresh objects, resume, N/2 more (CPU).
    # The resume point (step 7) falls mid-epoch; validation runs at epoch ends.
    data = _data() if data_kind == "tensor" else _dynamic_dataset()
    val = _data(40, seed=5)
    common = dict(epochs=5, batch_size=25, val_data=val, seed=3, progress=False, log_every=3)
    straight = _learner()
    r1 = train(straight, data, out=tmp_path / "a", max_steps=14, **common)
    assert r1.step == 14
    half = _learner()
    train(half, data, out=tmp_path / "b", max_steps=7, checkpoint_every=7, **common)
    assert load_checkpoint(tmp_path / "b")["step"] == 7
    resumed = _learner(seed=123)  # different initialisation: must be overwritten by resume
    r2 = train(resumed, data, out=tmp_path / "b", max_steps=14, **common)
    assert r2.step == 14
    _assert_same_state(straight, resumed)
    # the history of the resumed run continues the first half's
    assert [row["step"] for row in r2.history if row["kind"] == "val"] == [
        row["step"] for row in r1.history if row["kind"] == "val"
    ]


class NaNAfter:
    """A learner wrapper whose loss becomes NaN from a given step on."""

    def __init__(self, learner, bad_step):
        self.learner, self.bad_step, self.calls = learner, bad_step, 0

    def step(self, batch):
        self.calls += 1
        out = self.learner.step(batch)
        if self.calls >= self.bad_step:
            with torch.no_grad():
                for p in self.learner.module.parameters():
                    p.fill_(float("nan"))
            out = {"loss": torch.tensor(float("nan"))}
        return out

    def evaluate(self, batch):
        return self.learner.evaluate(batch)

    def state_dict(self):
        return self.learner.state_dict()

    def load_state_dict(self, state):
        self.learner.load_state_dict(state)

    def to(self, device):
        self.learner.to(device)
        return self


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    learner = NaNAfter(_learner(), bad_step=8)
    with pytest.raises(TrainingDiverged, match=r"loss = nan at step 8.*step 5\) is intact"):
        train(
            learner,
            _data(),
            epochs=10,
            batch_size=20,
            out=tmp_path,
            checkpoint_every=5,
            log_every=4,
            progress=False,
        )
    state = load_checkpoint(tmp_path)
    assert state["step"] == 5
    for value in state["learner"]["module"].values():
        assert torch.isfinite(value).all()
    # and the learner in memory was put back to that state
    for value in learner.learner.module.state_dict().values():
        assert torch.isfinite(value).all()


def test_nan_without_checkpoint_says_so():
    learner = NaNAfter(_learner(), bad_step=2)
    with pytest.raises(TrainingDiverged, match="No checkpoint"):
        train(learner, _data(), epochs=1, batch_size=20, progress=False)


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    engine.save_checkpoint({"step": 1, "payload": torch.arange(1000)}, path)

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        engine.save_checkpoint({"step": 2, "payload": torch.arange(5)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["payload"], torch.arange(1000))
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # no temporary file left behind


def test_training_improves_the_validation_bound(tmp_path):
    data = torch.zeros(200, 16)
    data[:100, :8] = 1
    data[100:, 8:] = 1
    learner = _learner()
    result = train(learner, data, epochs=6, batch_size=20, val_data=data[::10], progress=False)
    vals = [row["val_loss"] for row in result.history if row["kind"] == "val"]
    assert len(vals) == 6 and vals[-1] < vals[0] - 3  # nats per example


def test_progress_bar_and_history_file(tmp_path, capsys):
    train(_learner(), _data(), epochs=1, batch_size=30, out=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "loss=" in err and "4/4" in err
    rows = engine.read_history(tmp_path)  # history.jsonl: one JSON object per line
    assert (tmp_path / "history.jsonl").exists() and rows[-1]["step"] == 4
    assert [r["kind"] for r in rows] == ["train"]


def test_devices():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        train(_learner(), _data(), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="empty"):
        train(_learner(), torch.zeros(0, 16), progress=False)


@pytest.mark.requires_cuda
def test_trains_on_cuda(tmp_path):
    learner = _learner()
    result = train(
        learner, _data(), epochs=1, batch_size=30, device="cuda", out=tmp_path, progress=False
    )
    assert next(learner.module.parameters()).is_cuda and result.step == 4
    state = load_checkpoint(tmp_path)
    assert state["step"] == 4


def test_lr_schedule_is_applied_per_epoch_and_resumes_exactly(tmp_path):
    seen = []

    def schedule(epoch):
        return 1e-2 * 0.5**epoch

    def record(row):
        if row["kind"] == "train":
            seen.append((row["epoch"], learner.optimizer.param_groups[0]["lr"]))

    learner = _learner()
    common = dict(epochs=3, batch_size=40, seed=1, progress=False, lr_schedule=schedule)
    train(learner, _data(), callback=record, log_every=1, **common)
    assert {e: lr for e, lr in seen if e < 3} == {0: 1e-2, 1: 5e-3, 2: 2.5e-3}
    # interrupted after 4 steps (epoch 1 of 3 steps each) and resumed: same result
    half = _learner()
    train(half, _data(), out=tmp_path, max_steps=4, checkpoint_every=4, **common)
    resumed = _learner(seed=9)
    train(resumed, _data(), out=tmp_path, **common)
    _assert_same_state(learner, resumed)


class Minimal:
    """A learner with only the required methods, recording what the engine calls."""

    def __init__(self):
        self.calls = []

    def step(self, batch):
        self.calls.append(("step", batch.shape[0]))
        return {"loss": torch.tensor(float(batch.shape[0]))}

    def evaluate(self, batch):
        return {"loss": torch.tensor(0.0)}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def to(self, device):
        return self


def test_the_engine_checks_the_learner_protocol():
    class NoStep(Minimal):
        step = None

    with pytest.raises(TypeError, match="lacks step"):
        train(NoStep(), _data(), progress=False)
    # set_lr is needed only with a schedule, and the message names it
    with pytest.raises(TypeError, match="set_lr"):
        train(Minimal(), _data(), progress=False, lr_schedule=lambda epoch: 1e-3)
    assert train(Minimal(), _data(), batch_size=50, progress=False).step == 3
    assert isinstance(_learner(), engine.Learner)


def test_steps_per_epoch_are_computed_once_and_handed_to_the_learner():
    class Told(Minimal):
        def set_steps_per_epoch(self, steps):
            self.calls.append(("steps_per_epoch", steps))

    learner = Told()
    train(learner, _data(n=120), epochs=2, batch_size=50, progress=False)
    # ceil(120 / 50) = 3 steps per epoch, told once before the first step
    assert learner.calls[0] == ("steps_per_epoch", 3)
    assert [c for c in learner.calls if c[0] == "steps_per_epoch"] == [("steps_per_epoch", 3)]
    assert [c[1] for c in learner.calls if c[0] == "step"] == [50, 50, 20] * 2


def test_history_file_has_one_json_object_per_row(tmp_path):
    result = train(
        _learner(),
        _data(),
        epochs=2,
        batch_size=40,
        val_data=_data(20, seed=2),
        out=tmp_path,
        log_every=1,
        progress=False,
    )
    rows = engine.read_history(tmp_path)
    assert rows == result.history
    assert [r["kind"] for r in rows].count("val") == 2
    assert all(r["kind"] == "train" and "loss" in r for r in rows if r["kind"] != "val")
    lines = (tmp_path / engine.HISTORY_NAME).read_text().splitlines()
    assert len(lines) == len(rows)
