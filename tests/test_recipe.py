"""The training recipe by name (torch_recipe, model_param.loss): what it trains equals plain torch, it resumes
exactly, and every bad spec is reported before the run, naming its dotted key."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import ROOT, write_opts
from playground import data, opts as opts_lib
from playground.builtins import classification_model, torch_recipe
from playground.errors import OptsError
from playground.runner import prepare
from playground.testing import tiny_experiment

EXAMPLE = ROOT / "examples" / "mlp_adamw_onecycle.json"
EPOCHS, ITERS, BATCH = 3, 4, 8


def recipe_opts(**model_param) -> dict:
    """The example's opts, small: 2 epochs of 10 iterations, with `model_param` overrides."""
    opts = json.loads(EXAMPLE.read_text())["opts"]
    opts["epoch_iter"].update(num_train_sample_per_epoch=640, num_test_sample=256, num_epochs=2,
                              num_train_iteration_per_test=5)
    opts["model_param"].update(model_param)
    return opts


def problems(**model_param) -> list[str]:
    with pytest.raises(OptsError) as caught:
        prepare(recipe_opts(**model_param))
    return caught.value.problems


def run_info(**model_param) -> SimpleNamespace:
    opts = opts_lib.with_defaults({"model_param": {"base_learning_rate": 0.05, "no_weight_decay": [],
                                                   **model_param}}, torch_recipe.OPTS)
    return SimpleNamespace(opts=opts, epoch_iterations=ITERS, num_epochs=EPOCHS)


RECIPES = {
    "adamw-onecycle": dict(optimizer={"type": "AdamW", "params": {"weight_decay": 0.05, "betas": [0.8, 0.99]}},
                           lr_scheduler={"type": "OneCycleLR", "params": {"total_steps": "auto"}}),
    "sgd-multistep-per-epoch": dict(optimizer={"type": "SGD", "params": {"momentum": 0.9, "nesterov": True}},
                                    lr_scheduler={"type": "MultiStepLR", "params": {"milestones": [1, 2]},
                                                  "interval": "epoch"}),
}


@pytest.mark.parametrize("name", RECIPES)
def test_training_equals_a_handwritten_torch_loop_bitwise(tmp_path, name):
    info = run_info(**RECIPES[name])
    exp = tiny_experiment(tmp_path / "run", epochs=EPOCHS, iterations=ITERS, batch_size=BATCH)
    exp.optimizer = torch_recipe.build_optimizer(info, exp.network)
    exp.lr_scheduler = torch_recipe.build_lr_scheduler(info, exp.optimizer)
    exp.run()

    torch.manual_seed(0)  # what tiny_experiment draws: the data, then the network
    inputs, labels = torch.randn(2 * ITERS * BATCH, 4), torch.randint(3, (2 * ITERS * BATCH,))
    net = nn.Linear(4, 3)
    if name == "adamw-onecycle":
        optimizer = torch.optim.AdamW(net.parameters(), lr=0.05, weight_decay=0.05, betas=(0.8, 0.99))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=EPOCHS * ITERS)
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1, 2])
    for epoch in range(EPOCHS):
        order = data.epoch_order(ITERS * BATCH, ITERS * BATCH, 0, epoch)
        for indices in data.train_batch_indices(order, BATCH, 0, BATCH, 0, ITERS):
            loss = nn.functional.cross_entropy(net(inputs[indices]), labels[indices])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if name == "adamw-onecycle":
                scheduler.step()
        if name != "adamw-onecycle":
            scheduler.step()
    assert torch.equal(exp.network.weight, net.weight) and torch.equal(exp.network.bias, net.bias)


def test_reduce_lr_on_plateau_steps_on_each_epochs_test_metric_as_torch_does(tmp_path):
    """The schedule sees each epoch's test loss after its test pass, before the next epoch trains."""
    plateau = {"type": "ReduceLROnPlateau", "params": {"factor": 0.5, "patience": 0, "threshold": 10.0},
               "monitor": "test_loss", "interval": "epoch"}  # a 1000% improvement needed: it halves at each epoch end
    info = run_info(optimizer={"type": "SGD"}, lr_scheduler=plateau)
    exp = tiny_experiment(tmp_path / "run", epochs=EPOCHS, iterations=ITERS, batch_size=BATCH)
    exp.optimizer = torch_recipe.build_optimizer(info, exp.network)
    exp.lr_scheduler = torch_recipe.build_lr_scheduler(info, exp.optimizer)
    exp.run()
    rates = [row["learning_rate"] for row in exp.history["train"]]
    assert rates == [0.05] * ITERS + [0.025] * ITERS + [0.0125] * ITERS  # each epoch trains at the rate its
    # predecessor's test pass left
    reference = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.05)
    torch_plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(reference, factor=0.5, patience=0, threshold=10.0)
    for row in exp.history["test"]:
        torch_plateau.step(row["test_loss"])
    assert exp.optimizer.param_groups[0]["lr"] == reference.param_groups[0]["lr"] == 0.00625


def test_warmup_rises_linearly_then_the_schedule_starts_at_its_first_rate():
    info = run_info(optimizer={"type": "SGD"}, lr_scheduler={
        "type": "CosineAnnealingLR", "params": {"T_max": "auto"}, "warmup": {"epochs": 1, "start_factor": 0.2}})
    optimizer = torch_recipe.build_optimizer(info, nn.Linear(2, 2))
    scheduler = torch_recipe.build_lr_scheduler(info, optimizer)
    rates = []
    for _ in range(EPOCHS * ITERS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:ITERS] == pytest.approx([0.05 * (0.2 + 0.8 * i / ITERS) for i in range(ITERS)])
    assert rates[ITERS] == 0.05  # the cosine schedule's own first rate, then its T_max = 8 remaining steps
    reference = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.05)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=(EPOCHS - 1) * ITERS)
    expected = []
    for _ in range((EPOCHS - 1) * ITERS):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        cosine.step()
    assert rates[ITERS:] == expected


def test_no_weight_decay_keeps_biases_norms_and_named_parameters_out_of_decay():
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2, bias=False))
    net.register_parameter("pos_embed", nn.Parameter(torch.zeros(4)))
    info = run_info(optimizer={"type": "AdamW", "params": {"weight_decay": 0.1}},
                    no_weight_decay=["bias", "norm", "pos_embed"])
    decay, kept = torch_recipe.build_optimizer(info, net).param_groups
    assert (decay["name"], decay["weight_decay"], kept["name"], kept["weight_decay"]) == ("decay", 0.1,
                                                                                           "no_decay", 0.0)
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[2].weight)}
    assert {id(p) for p in kept["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias),
                                               id(net.pos_embed)}
    only_bias = torch_recipe.build_optimizer(run_info(optimizer={"type": "AdamW"}, no_weight_decay=["bias"]), net)
    assert {id(p) for p in only_bias.param_groups[1]["params"]} == {id(net[0].bias), id(net[1].bias)}
    assert len(torch_recipe.build_optimizer(run_info(optimizer={"type": "AdamW"}), net).param_groups) == 1


def test_loss_by_name_is_built_once_and_label_smoothing_still_applies():
    param = opts_lib.with_defaults({"model_param": {"label_smoothing": 0.2}}, classification_model.OPTS)
    assert param["model_param"]["loss"] == {"type": "CrossEntropyLoss", "params": {}}  # the default
    loss = classification_model.build_loss(param["model_param"])
    assert isinstance(loss, nn.CrossEntropyLoss) and loss.label_smoothing == 0.2
    weighted = classification_model.build_loss({"label_smoothing": 0.0, "loss": {
        "type": "torch.nn.NLLLoss", "params": {"weight": [1.0, 2.0]}}})
    assert isinstance(weighted, nn.NLLLoss) and torch.equal(weighted.weight, torch.tensor([1.0, 2.0]))


def test_every_bad_spec_is_reported_at_once_naming_its_key():
    found = problems(optimizer={"type": "AdamWW", "params": {}},
                     loss={"type": "CrossEntropyLos", "params": {"label_smoothing": 0.1}},
                     lr_scheduler={"type": "OneCycleLR", "params": {"totl_steps": 5, "anneal_strategy": "cosine",
                                                                    "pct_start": "x", "optimizer": 1}})
    text = "\n".join(found)
    assert "model_param.optimizer.type: 'AdamWW' is not a optimizer of torch.optim; did you mean 'AdamW'" in text
    assert "model_param.loss.type: 'CrossEntropyLos' is not a loss of torch.nn; did you mean 'CrossEntropyLoss'" in text
    assert ("model_param.lr_scheduler.params.totl_steps: OneCycleLR takes no such parameter; did you mean "
            "'total_steps'?") in text
    assert "model_param.lr_scheduler.params.anneal_strategy: OneCycleLR takes Literal['cos', 'linear'], " \
           'got "cosine"' in text
    assert 'model_param.lr_scheduler.params.pct_start: OneCycleLR takes float, got "x"' in text
    assert "model_param.lr_scheduler.params.optimizer: set by the framework" in text
    assert len(found) == 6, found


@pytest.mark.parametrize("model_param, expected", [
    (dict(optimizer={"type": "AdamW", "params": {"betas": 0.9, "amsgrad": 1}}),
     ["model_param.optimizer.params.betas: AdamW takes tuple[float | torch.Tensor, float | torch.Tensor], got 0.9",
      "model_param.optimizer.params.amsgrad: AdamW takes bool, got 1"]),
    (dict(optimizer={"type": "AdamW", "params": {"eps": -1}}),
     ["model_param.optimizer.params: AdamW refuses them: Invalid epsilon value: -1"]),
    (dict(optimizer={"type": "AdamW", "params": {"lr": 0.1}}),
     ["model_param.optimizer.params.lr: set by the framework (model_param.base_learning_rate); leave it out"]),
    (dict(optimizer={"type": "LBFGS"}), ["model_param.optimizer.type: 'LBFGS' cannot be built from opts: its step"]),
    (dict(optimizer={"type": "torch.nn.Linear"}),
     ["model_param.optimizer.type: 'torch.nn.Linear' is not a subclass of torch.optim.optimizer.Optimizer"]),
    (dict(optimizer={"type": "Rprop"}, no_weight_decay=["bias"], lr_scheduler=None),
     ["model_param.no_weight_decay: Rprop takes no weight_decay; leave no_weight_decay out"]),
    (dict(lr_scheduler={"type": "MultiStepLR", "params": {}}),
     ["model_param.lr_scheduler.params.milestones: missing; MultiStepLR requires it"]),
    (dict(lr_scheduler={"type": "OneCycleLR", "params": {"pct_start": 2}}),
     ["model_param.lr_scheduler.params: OneCycleLR refuses them: "]),
    (dict(lr_scheduler={"type": "ReduceLROnPlateau", "interval": "epoch"}),
     ["model_param.lr_scheduler.monitor: missing; ReduceLROnPlateau watches a recorded metric"]),
    (dict(lr_scheduler={"type": "ReduceLROnPlateau", "monitor": "test_los", "interval": "epoch"}),
     ["model_param.lr_scheduler.monitor: 'test_los' is not a recorded metric"]),
    (dict(lr_scheduler={"type": "ReduceLROnPlateau", "monitor": "test_loss"}),
     ['model_param.lr_scheduler.interval: ReduceLROnPlateau steps once per epoch, after its test pass']),
    (dict(lr_scheduler={"type": "OneCycleLR", "params": {"total_steps": "auto"}, "monitor": "test_loss"}),
     ["model_param.lr_scheduler.monitor: only ReduceLROnPlateau watches a metric; leave it out"]),
    (dict(lr_scheduler={"type": "OneCycleLR", "params": {"total_steps": "auto"}, "interval": "epochs"}),
     ['model_param.lr_scheduler.interval: must be one of "iteration", "epoch", got "epochs"']),
    (dict(lr_scheduler={"type": "OneCycleLR", "params": {"total_steps": "auto"}, "warmup": {"epochs": 2}}),
     ["model_param.lr_scheduler.warmup.epochs: must be shorter than epoch_iter.num_epochs (2), got 2"]),
    (dict(lr_scheduler={"type": "OneCycleLR", "params": {}, "warmup": {"start_factor": 0.5}}),
     ["model_param.lr_scheduler.warmup.epochs: missing"]),
    (dict(loss={"type": "NLLLoss", "params": {"label_smoothing": 0.1}}),
     ["model_param.loss.params.label_smoothing: NLLLoss takes no such parameter"]),
    (dict(label_smoothing=0.1, loss={"type": "NLLLoss"}),
     ["model_param.label_smoothing: applies only to a CrossEntropyLoss"]),
])
def test_a_bad_recipe_is_an_opts_error_naming_the_key(model_param, expected):
    found = problems(**model_param)
    assert len(found) == len(expected), found
    for line, start in zip(found, expected):
        assert line.startswith(start), found


def test_dry_run_reports_a_bad_recipe_and_creates_nothing(tmp_path):
    opts = recipe_opts(optimizer={"type": "Adamw"})
    opts["output"]["checkpoint_folder"] = str(tmp_path / "run")
    result = subprocess.run([sys.executable, "-m", "playground", "run", "--dry-run", "--parameters-json",
                             write_opts(tmp_path, opts)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "model_param.optimizer.type: 'Adamw'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def run_command(opts_path: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "playground", "run", "--parameters-json", opts_path], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_sigkilled_adamw_onecycle_run_resumes_bitwise(tmp_path):
    """Killed at step 13 (after the warm-up's 5 steps, the checkpoint at 12) and resumed: the same weights,
    optimizer and schedule as a run never interrupted (which has the same handler, its marker already set)."""
    finals = {}
    for name in ("whole", "killed"):
        marker = tmp_path / f"{name}.marker"
        if name == "whole":
            marker.touch()
        opts = recipe_opts(lr_scheduler={"type": "OneCycleLR", "params": {"total_steps": "auto"},
                                         "warmup": {"epochs": 0.5, "start_factor": 0.3}})
        opts["output"].update(checkpoint_folder=str(tmp_path / name), checkpoint_every_iters=4, handlers=[
            {"handler_py": "lab_helpers.SigkillAt", "kargs": {"step": 13, "marker": str(marker)}}])
        path = write_opts(tmp_path, opts, f"{name}.json")
        first = run_command(path)
        if name == "killed":
            assert first.returncode == -signal.SIGKILL, first.stderr
            resumed = run_command(path)
            assert resumed.returncode == 0 and "resuming from" in resumed.stderr, resumed.stderr
        else:
            assert first.returncode == 0, first.stderr
        finals[name] = torch.load(tmp_path / name / "model_final.pt", weights_only=True)
    whole, killed = finals["whole"], finals["killed"]
    assert all(torch.equal(whole["model"][k], killed["model"][k]) for k in whole["model"])
    for state_whole, state_killed in zip(whole["optimizer"]["state"].values(), killed["optimizer"]["state"].values()):
        assert all(torch.equal(state_whole[k], state_killed[k]) for k in state_whole)
    assert whole["optimizer"]["param_groups"] == killed["optimizer"]["param_groups"]
    assert whole["lr_scheduler"] == killed["lr_scheduler"] and whole["lr_scheduler"]["iterations"] == 20
