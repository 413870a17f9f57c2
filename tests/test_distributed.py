"""Data-parallel training and evaluation (pyrogen.distributed) with 2 processes on gloo/CPU.

Two ``torch.multiprocessing`` spawns of 2 ranks (the engine's own ``torchrun`` path: the
workers set ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and let the engine join the group):

* one runs every scenario below and saves what each rank ends with; the single-process
  references are computed here, in the test process;
* one crashes rank 1 mid-run.

Everything runs in float64, so "equal" means equal up to the rounding of the 2-term
all-reduce (``rtol=1e-10``; the sums are exact in practice). Learners that draw random
numbers (VAE, CD) are compared against a single process that computes the gradient of the
union batch as the sum of the two shards' gradients, each drawn from the random stream that
rank would use (:func:`pyrogen.distributed.rank_seed`): the gradient of the union of the shards,
with the same noise.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pyro
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from pyro.infer import Trace_ELBO

from pyrogen import distributed
from pyrogen.distributions.nade import NADE
from pyrogen.evaluate import exact_log_likelihood, importance_log_likelihood
from pyrogen.evaluate.energy import energy_log_likelihood
from pyrogen.infer import ContrastiveDivergence
from pyrogen.models import VAE
from pyrogen.models.autoregressive import AutoregressiveModel
from pyrogen.models.rbm import RBM
from pyrogen.nn.nade import NADENet
from pyrogen.train import StagedLearner, SVILearner, epoch_batches, load_checkpoint, train

D, N, B, SEED = 12, 40, 10, 0
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _data() -> torch.Tensor:
    gen = torch.Generator().manual_seed(123)
    return torch.bernoulli(torch.full((N, D), 0.3, dtype=torch.float64), generator=gen)


# ----------------------------------------------------------------------------- learners


def _nade():
    torch.manual_seed(1)
    model = AutoregressiveModel(NADENet(D, 8), NADE, (D,)).double()
    return SVILearner(model, Trace_ELBO(), lr=0.05)


def _vae():
    torch.manual_seed(2)
    model = VAE(D, latent_dims=(3,), hidden=((8,),)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return SVILearner(model, Trace_ELBO(), optimizer=opt)


def _rbm(persistent=True):
    torch.manual_seed(3)
    model = RBM(D, 6, init_scale=0.1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return SVILearner(model, ContrastiveDivergence(k=1, persistent=persistent), optimizer=opt)


def _seeded_cd(persistent=True, num_chains=B):
    """CD with its own noise (what the energy-based families use): chains independent of the
    number of processes."""
    torch.manual_seed(3)
    model = RBM(D, 6, init_scale=0.1).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = ContrastiveDivergence(k=2, persistent=persistent, num_chains=num_chains, seed=7)
    return SVILearner(model, loss, optimizer=opt)


def _staged():
    a, b = _nade(), _nade()
    return StagedLearner([("first", a, None, None, 1), ("second", b)])


def _params(learner) -> dict[str, torch.Tensor]:
    modules = [s.learner.module for s in learner.stages] if hasattr(learner, "stages") else None
    modules = modules or [learner.module]
    return {
        f"{i}.{k}": v.detach().clone()
        for i, m in enumerate(modules)
        for k, v in m.state_dict().items()
    }


BUILD = {
    "nade": _nade,
    "vae": _vae,
    "rbm": _rbm,
    "staged": _staged,
    "pcd_seeded": _seeded_cd,  # as many chains as the global batch: they start at it
    "pcd_more_chains": lambda: _seeded_cd(num_chains=B + 4),  # started at random states
    "cd_seeded": lambda: _seeded_cd(persistent=False, num_chains=None),
}
SEEDED_CD = ("pcd_seeded", "pcd_more_chains", "cd_seeded")


def _train(kind, steps, out=None, **kw):
    learner = BUILD[kind]()
    train(learner, _data(), batch_size=B, seed=SEED, max_steps=steps, epochs=10,
          out=out, progress=False, checkpoint_every=1, **kw)  # fmt: skip
    return _params(learner)


# ----------------------------------------------------------------------------- evaluation


def _evaluate() -> dict[str, torch.Tensor]:
    x = _data()
    vae = _vae().module
    torch.manual_seed(5)
    rbm = RBM(25, 25, init_scale=0.3).double()
    y = torch.bernoulli(torch.full((30, 25), 0.4, dtype=torch.float64))
    is_ll = importance_log_likelihood(
        vae.model, vae.guide, x, num_samples=7, batch_size=6, seed=4, progress=False
    )
    ex = exact_log_likelihood(_nade().module, x, batch_size=7)
    ais = energy_log_likelihood(
        rbm.distribution(), y, num_chains=8, betas=30, seed=4, chain_groups=4, batch_size=8,
        progress=False,
    )  # fmt: skip
    return {
        "is": is_ll.per_example,
        "is_ess": is_ll.ess,
        "exact": ex.per_example,
        "ais": ais.per_example,
        "ais_log_z": torch.tensor(ais.diagnostics["log_z"]),
    }


# ----------------------------------------------------------------------------- the worker


def _scenarios(out: Path, rank: int) -> dict:
    result = {}
    for kind in ("nade", "staged"):  # deterministic learners: 3 steps, Adam
        result[kind] = _train(kind, 3)
    for kind in ("vae", "rbm"):  # random learners: one step of SGD
        result[kind] = _train(kind, 1)
    # resume from a 1-process checkpoint with 2 processes
    result["from_1"] = _train("nade", 4, out=out / "from_1")
    # a 2-process checkpoint, resumed with 1 process (in the test process)
    _train("nade", 2, out=out / "to_1")
    _train("rbm", 2, out=out / "rbm_to_1")
    # exact resume with 2 processes: random streams and persistent chains per rank
    result["rbm_whole"] = _train("rbm", 4, out=out / "rbm_whole")
    _train("rbm", 2, out=out / "rbm_split")
    result["rbm_resumed"] = _train("rbm", 4, out=out / "rbm_split")
    result["vae_whole"] = _train("vae", 4, out=out / "vae_whole")
    _train("vae", 2, out=out / "vae_split")
    result["vae_resumed"] = _train("vae", 4, out=out / "vae_split")
    for kind in SEEDED_CD:  # 5 steps: chains carry over, and the last batch is smaller
        result[kind] = _train(kind, 5)
    _train("pcd_seeded", 2, out=out / "pcd_seeded_split")
    result["pcd_seeded_resumed"] = _train("pcd_seeded", 5, out=out / "pcd_seeded_split")
    result["eval"] = _evaluate()
    return result


class _CrashOnRank1:
    """A learner that raises on rank 1 at its third step."""

    def __init__(self):
        self.inner, self.count = _nade(), 0

    def step(self, batch):
        self.count += 1
        if self.count == 3 and distributed.world().rank == 1:
            raise RuntimeError("rank 1 crashed")
        return self.inner.step(batch)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _crash(out: Path, rank: int) -> dict:
    learner = _CrashOnRank1()
    train(learner, _data(), batch_size=B, seed=SEED, epochs=10, out=out / "crash",
          progress=False, checkpoint_every=1)  # fmt: skip
    return {}


def _worker(rank: int, world_size: int, port: int, job: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo",  # no host-name lookup (slow on machines without DNS)
    )
    torch.set_num_threads(1)
    pyro.enable_validation(True)
    out = Path(out)
    distributed.init("cpu", timeout_s=60)
    result = {"scenarios": _scenarios, "crash": _crash}[job](out, rank)
    torch.save(result, out / f"{job}.rank{rank}.pt")
    tdist.destroy_process_group()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(job: str, out: Path) -> None:
    mp.start_processes(
        _worker, args=(2, _port(), job, str(out)), nprocs=2, join=True, start_method="fork"
    )


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of the 2 ranks ended with, and the run folders they wrote."""
    out = tmp_path_factory.mktemp("ddp")
    _train("nade", 2, out=out / "from_1")  # a 1-process checkpoint the ranks resume
    _spawn("scenarios", out)
    return [torch.load(out / f"scenarios.rank{r}.pt") for r in (0, 1)], out


# ----------------------------------------------------------------------------- references


def _shard_sum_step(kind):
    """One SGD step of ``kind`` on the first global batch, its gradient the sum of the two
    shards' gradients, each drawn from that rank's random stream (and its own chains)."""
    learner = BUILD[kind]()
    batch = next(epoch_batches(_data(), B, SEED, 0))
    losses = [learner.loss] + [ContrastiveDivergence(k=1, persistent=True)] * (kind == "rbm")
    learner.optimizer.zero_grad()
    for rank, shard in enumerate(batch.tensor_split(2)):
        pyro.set_rng_seed(distributed.rank_seed(SEED, rank))
        loss = losses[rank] if kind == "rbm" else learner.loss
        if hasattr(loss, "value_and_grads"):
            loss.value_and_grads(learner.model, learner.guide, shard)
        else:
            loss.differentiable_loss(learner.model, learner.guide, shard).backward()
    learner.optimizer.step()
    return _params(learner)


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], **TOL, msg=k)


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind", ["nade", "staged"])
def test_parameters_equal_one_process_with_the_global_batch(ranks, kind):
    """NADE (autoregressive, SVI with Adam) and a staged learner crossing its stage boundary:
    3 steps on 2 ranks give the parameters of 3 steps in 1 process with the same batch."""
    (r0, r1), _ = ranks
    _close(r0[kind], r1[kind])  # replicas stay equal
    _close(r0[kind], _train(kind, 3))


@pytest.mark.parametrize("kind", ["vae", "rbm"])
def test_one_step_gradient_is_that_of_the_union_of_the_shards(ranks, kind):
    """SVI on a VAE and persistent CD (gradients written straight into .grad): after one
    SGD step, the parameters are those of the union batch's gradient."""
    (r0, r1), _ = ranks
    _close(r0[kind], r1[kind])
    _close(r0[kind], _shard_sum_step(kind))


@pytest.mark.parametrize("kind", SEEDED_CD)
def test_seeded_contrastive_divergence_equals_one_process(ranks, kind):
    """CD / PCD with its own noise generator: each rank holds its share of the chains and
    keeps its rows of every draw, so 5 steps on 2 ranks (global batch B) give the parameters
    of 5 steps in 1 process with batch B, up to the reduction's rounding; a 2-rank run
    resumed from its checkpoint continues exactly."""
    (r0, r1), _ = ranks
    _close(r0[kind], r1[kind])
    _close(r0[kind], _train(kind, 5))
    if kind == "pcd_seeded":
        _close(r0["pcd_seeded_resumed"], r0[kind])


def test_resume_with_another_number_of_processes(ranks):
    """A 1-process checkpoint resumed on 2 ranks, and a 2-rank checkpoint resumed in 1
    process, continue as one process would (deterministic NADE: exactly)."""
    (r0, _), out = ranks
    whole = _train("nade", 4)
    _close(r0["from_1"], whole)
    state = load_checkpoint(out / "to_1")
    assert state["step"] == 2 and state["world_size"] == 2 and len(state["rank_states"]) == 2
    _close(_train("nade", 4, out=out / "to_1"), whole)
    # persistent chains of a 2-rank checkpoint: rank 0's carry on in one process
    rbm = load_checkpoint(out / "rbm_to_1")
    chains = rbm["learner"]["loss"]["chains"]
    torch.testing.assert_close(chains, rbm["rank_states"][0]["loss"]["chains"])
    _train("rbm", 4, out=out / "rbm_to_1")


@pytest.mark.parametrize("kind", ["rbm", "vae"])
def test_resume_with_the_same_processes_continues_exactly(ranks, kind):
    """2 ranks, 2 steps, checkpoint, 2 more steps = 4 steps straight (each rank's random
    stream and persistent chains are restored)."""
    (r0, r1), _ = ranks
    _close(r0[f"{kind}_resumed"], r0[f"{kind}_whole"])
    _close(r1[f"{kind}_resumed"], r1[f"{kind}_whole"])


def test_distributed_evaluation_equals_one_process(ranks):
    """Importance sampling (VAE), exact (NADE) and AIS (chains in 4 seeded groups) on 2
    ranks give the single-process numbers for the same seed, exactly."""
    (r0, r1), _ = ranks
    single = _evaluate()
    for key in single:
        torch.testing.assert_close(r0["eval"][key], single[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(r1["eval"][key], single[key], rtol=0, atol=0, msg=key)


def test_a_crashed_rank_leaves_the_last_checkpoint_whole(tmp_path):
    """Rank 1 raises at its third step: the run fails, and the checkpoint rank 0 wrote at
    step 2 (atomically) loads and resumes."""
    with pytest.raises(Exception):  # noqa: B017 (rank 1's error, or rank 0's lost peer)
        _spawn("crash", tmp_path)
    state = load_checkpoint(tmp_path / "crash")
    assert state["step"] == 2 and state["world_size"] == 2
    assert not list((tmp_path / "crash").glob("*.tmp"))
    _train("nade", 3, out=tmp_path / "crash")


def test_sharding_and_steps_per_epoch():
    """Each rank gets a contiguous slice of the same global batch; a last batch smaller
    than the number of ranks is dropped."""
    data = torch.arange(23.0)[:, None]
    one = [b for b in epoch_batches(data, 5, seed=1, epoch=2)]
    two = [list(epoch_batches(data, 5, seed=1, epoch=2, rank=r, world_size=2)) for r in (0, 1)]
    assert len(two[0]) == len(two[1]) == distributed.steps_per_epoch(23, 5, 2) == 5
    for b, s0, s1 in zip(one, *two):
        torch.testing.assert_close(torch.cat([s0, s1]), b)
    three = [list(epoch_batches(data, 5, seed=1, epoch=2, rank=r, world_size=4)) for r in (0, 3)]
    assert len(three[0]) == len(three[1]) == distributed.steps_per_epoch(23, 5, 4) == 4


def test_nproc_starts_torchrun(monkeypatch, tmp_path):
    """``pyrogen train ... --nproc 2`` re-runs itself as ``python -m torch.distributed.run
    --nproc_per_node=2 -m pyrogen train ...`` (without --nproc); under torchrun it trains."""
    from pyrogen import cli

    calls = []
    monkeypatch.setattr(distributed.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    for var in distributed.LAUNCH_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    argv = ["train", "nade", "--nproc", "2", "--epochs", "1", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 0
    (command,) = calls
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert command[5:] == ["-m", "pyrogen", "train", "nade", "--epochs", "1", "--out", argv[-1]]
    assert not (tmp_path / "r").exists()  # the parent process itself trained nothing


def test_row_noise_shares_are_rows_of_one_draw():
    """Two ranks' shares of uniform and normal draws (same generator state) are the rows of
    the draw one process makes for all rows; other shapes are drawn whole."""
    from pyrogen import _rng

    def draws(offset, rows, total):
        gen = torch.Generator().manual_seed(11)
        noise = _rng.RowNoise(gen, offset, rows, total)
        with _rng.row_noise(noise):
            like = torch.empty(rows, 3, dtype=torch.float64)
            return _rng.rand_like(like), _rng.randn_like(like), _rng.rand_like(torch.empty(2))

    whole = draws(0, 7, 7)
    parts = [draws(0, 4, 7), draws(4, 3, 7)]
    for i in (0, 1):
        torch.testing.assert_close(torch.cat([p[i] for p in parts]), whole[i], rtol=0, atol=0)
    torch.testing.assert_close(parts[1][2], whole[2], rtol=0, atol=0)
    assert _rng.rand_like(torch.empty(2)).shape == (2,)  # outside the block: global stream
    with pytest.raises(ValueError, match="do not fit"):
        _rng.RowNoise(torch.Generator(), 5, 3, 7)
    with pytest.raises(ValueError, match="seed"):
        ContrastiveDivergence(seed=1.5)
