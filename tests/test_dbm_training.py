"""Training deep Boltzmann machines: doubled pre-training RBMs (the greedy stack of
pyrogen.models.greedy), staged learning, joint CD."""

import pyro
import pytest
import torch

from pyrogen.data import load
from pyrogen.infer import ContrastiveDivergence
from pyrogen.models.dbm import DeepBoltzmannMachine
from pyrogen.models.greedy import StackRBM, greedy_stages, propagate
from pyrogen.models.rbm import RBM
from pyrogen.registry import DataInfo, get_family
from pyrogen.train import Stage, StagedLearner, SVILearner, load_checkpoint, train


def test_pretraining_rbm_doubles_the_right_input(float64):
    torch.manual_seed(0)
    v = (torch.rand(5, 6) < 0.5).double()
    h = (torch.rand(5, 4) < 0.5).double()
    bottom = StackRBM(6, 4, up=2).double()
    dist = bottom.distribution()  # two tied copies of the visible units
    W, b, c = bottom.weight, bottom.visible_bias, bottom.hidden_bias
    torch.testing.assert_close(dist.hidden_logits(torch.cat([v, v], -1)), c + 2 * v @ W)
    torch.testing.assert_close(dist.visible_logits(h)[:, :6], b + h @ W.T)
    torch.testing.assert_close(bottom.up(v), torch.sigmoid(c + 2 * v @ W))
    top = StackRBM(6, 4, down=2).double()
    dist = top.distribution()  # two tied copies of the hidden units
    torch.testing.assert_close(
        dist.visible_logits(torch.cat([h, h], -1)), top.visible_bias + 2 * h @ top.weight.T
    )
    torch.testing.assert_close(top.down(h), torch.sigmoid(top.visible_bias + 2 * h @ top.weight.T))
    # the model observes the tiled data: its site value is what the distribution scores
    torch.testing.assert_close(bottom._prepare(v), torch.cat([v, v], -1))


def test_greedy_stages_train_each_part_on_the_layers_below(float64):
    torch.manual_seed(0)
    parts = [StackRBM(6, 4), StackRBM(4, 3), StackRBM(3, 2)]
    seen = []

    class Recorder:
        def __init__(self, k):
            self.k = k

        def step(self, batch):
            seen.append((self.k, batch.clone()))
            return {}

    stages = greedy_stages(parts, lambda k, part: Recorder(k), epochs=2, prefix="rbm")
    assert [s[0] for s in stages] == ["rbm1", "rbm2", "rbm3"] and stages[0][3] is None
    x = torch.rand(5, 6)
    for _name, learner, epochs, prepare in stages:
        assert epochs == 2
        learner.step(prepare(x) if prepare else x)
    torch.testing.assert_close(seen[1][1], parts[0].up(x))
    torch.testing.assert_close(seen[2][1], parts[1].up(parts[0].up(x)))
    torch.testing.assert_close(propagate(parts[:2], x), seen[2][1])
    # sampled codes: binary, with the up-pass probabilities as their mean (seeded, 4000 rows)
    big = torch.rand(4000, 6)
    codes = propagate(parts[:1], big, sample=True)
    assert set(codes.unique().tolist()) <= {0.0, 1.0}
    assert (codes.mean(0) - parts[0].up(big).mean(0)).abs().max() < 0.03


def test_joint_cd_gradient_is_mean_field_minus_chain_statistics(float64):
    torch.manual_seed(0)
    model = DeepBoltzmannMachine(6, (4, 3), init_scale=0.5).double()
    x = (torch.rand(8, 6) < 0.5).double()
    loss = ContrastiveDivergence(k=1, persistent=True, num_chains=5, mean_field_iters=30)
    loss.differentiable_loss(model.model, model.guide, x).backward()
    v, h1, h2 = loss.chains["v"]
    dist = model.distribution()
    mu1, mu2 = dist.mean_field(x, num_iters=30, tol=None)
    n, m = 8, 5
    W1, W2 = model.weights
    torch.testing.assert_close(W1.grad, -(x.T @ mu1 - n / m * v.T @ h1))
    torch.testing.assert_close(W2.grad, -(mu1.T @ mu2 - n / m * h1.T @ h2))
    b, c1, c2 = model.biases
    torch.testing.assert_close(c2.grad, -(mu2.sum(0) - n / m * h2.sum(0)))


class Counting:
    def __init__(self, name, log):
        self.name, self.log, self.value = name, log, torch.tensor(0.0)

    def step(self, batch):
        self.log.append((self.name, float(batch.sum())))
        self.value += 1
        return {"loss": self.value.clone()}

    def evaluate(self, batch):
        return {"loss": self.value.clone()}

    def state_dict(self):
        return {"value": self.value.clone()}

    def load_state_dict(self, state):
        self.value = state["value"].clone()

    def to(self, device):
        return self


def test_staged_learner_switches_and_resumes_at_the_boundary(tmp_path):
    log, entered = [], []

    def make():
        return StagedLearner(
            [
                Stage("a", Counting("a", log), steps=4),
                Stage("b", Counting("b", log), prepare=lambda x: 2 * x),
            ],
            on_enter={"b": lambda: entered.append(len(log))},
        )

    data = torch.ones(30, 2)
    train(make(), data, epochs=1, batch_size=5, progress=False)
    straight, straight_entered = list(log), list(entered)
    assert [s for s, _ in straight] == ["a"] * 4 + ["b"] * 2
    assert [v for _, v in straight][4:] == [20.0, 20.0]  # stage b sees prepared batches
    assert straight_entered == [4]
    log.clear(), entered.clear()
    train(
        make(),
        data,
        epochs=1,
        batch_size=5,
        out=tmp_path,
        max_steps=4,
        checkpoint_every=4,
        progress=False,
    )
    assert load_checkpoint(tmp_path)["learner"]["count"] == 4
    train(make(), data, epochs=1, batch_size=5, out=tmp_path, progress=False)
    assert log == straight and entered == straight_entered


def test_staged_learner_lr_schedule_reaches_every_stage():
    rbms = [RBM(4, 3), RBM(3, 2)]
    learners = [
        SVILearner(r, ContrastiveDivergence(), optimizer=torch.optim.SGD(r.parameters(), lr=1.0))
        for r in rbms
    ]
    staged = StagedLearner([Stage("a", learners[0], steps=2), Stage("b", learners[1])])
    staged.set_lr(0.25)
    for learner in learners:
        assert [g["lr"] for g in learner.optimizer.param_groups] == [0.25]
    only_b = StagedLearner([Stage("a", learners[0], 1), Stage("b", learners[1])], lr_stages=["b"])
    only_b.set_lr(0.5)
    assert learners[0].optimizer.param_groups[0]["lr"] == 0.25
    assert learners[1].optimizer.param_groups[0]["lr"] == 0.5
    with pytest.raises(TypeError, match="no set_lr"):
        StagedLearner([Stage("a", Counting("a", []), steps=1)]).set_lr(0.1)
    with pytest.raises(ValueError, match="names no stage"):
        StagedLearner([Stage("a", learners[0])], lr_stages=["c"])


def test_stage_lengths_in_epochs_come_from_the_engine():
    # stage boundaries given in epochs are placed with the steps per epoch the engine
    # computes (30 examples / batch 5 = 6 steps): 2 epochs of "a" = 12 steps, then "b"
    log = []
    staged = StagedLearner(
        [Stage("a", Counting("a", log), epochs=2), Stage("b", Counting("b", log))]
    )
    with pytest.raises(RuntimeError, match="steps per epoch"):
        staged.stage  # noqa: B018 - unknown until the engine says
    train(staged, torch.ones(30, 2), epochs=3, batch_size=5, progress=False)
    assert staged.steps_per_epoch == 6
    assert [s for s, _ in log] == ["a"] * 12 + ["b"] * 6


def test_dbm_family_pretrains_then_trains_jointly_and_improves_the_exact_likelihood():
    # digits with a DBM small enough for exact log p(v): greedy pre-training then joint
    # training (seed 0); the exact test log-likelihood rises by more than 1 nat above the
    # initial model's. After 25 epochs the rise was 0.76 to 3.06 nats over seeds 0-5 on
    # one CPU (and passed on another at seed 0); after 50 epochs it is 1.6 to 2.9.
    x, test = load("digits", "train").data, load("digits", "test").data
    fam = get_family("dbm")
    cfg = fam.config(hidden=(12, 6), pretrain_epochs=5, chains=50)
    torch.manual_seed(0)
    module = fam.build(cfg, DataInfo(64, (8, 8), x.mean(0)))
    before = module.distribution().log_prob(test).mean().item()
    learner = fam.learner(module, cfg, 1e-3)
    train(learner, x, epochs=50, batch_size=100, progress=False)
    assert learner.stage == "joint" and learner.steps_per_epoch == 13
    after = module.distribution().log_prob(test).mean().item()
    assert after > before + 1.0, (before, after)
    result = fam.log_likelihood(module, cfg, test, num_chains=20, progress=False)
    assert abs(result.mean - after) < 1e-4  # exact route (small layers)
    assert len(pyro.get_param_store()) == 0  # trained without the global param store


def test_a_mean_field_bound_is_reported_as_a_bound():
    # hidden layers too large to sum out: -F(v) is replaced by its mean-field lower bound,
    # and the result says so (a bound, not an estimate of log p(v))
    torch.manual_seed(0)
    model = DeepBoltzmannMachine(6, (25, 22))
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    result = model.log_likelihood(x, num_chains=4, betas=30, progress=False)
    assert result.bound and not result.is_exact and "mean-field bound" in result.estimator
    assert result.to_dict()["bound"] is True
    small = DeepBoltzmannMachine(6, (4, 3)).log_likelihood(x, progress=False)
    assert small.is_exact and not small.bound  # enumerated: exact
