"""The SGD parameter-update component (under both of its names): weight-decay groups, LR scaling and the per-iteration schedule."""
from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import module_map
from conftest import seed_command_opts
from playground import opts as opts_lib
from playground.errors import OptsError
from playground.registry import import_path
from playground.runner import prepare
from resnetdemo import explicit_resnet_param_update, sgd_schedule
from resnetdemo.resnet import ResNet

# The seed's name for the same recipe, as opts resolve it.
caffe2_resnet50_default_param_update = import_path(
    module_map.MODULE_MAP["parameter_update"]["caffe2_resnet50_default_param_update"])

BASE = 0.1
PER_EPOCH = 10  # exp.epoch_iterations in these tests


def make_exp(total_batch_size: int = 256, epoch_iterations: int = PER_EPOCH, num_epochs: int = 10,
             num_epochs_per_flow_schedule: int = 5, **model_param) -> SimpleNamespace:
    opts = {"model_param": {"base_learning_rate": BASE, **model_param},
            "epoch_iter": {"num_epochs": num_epochs, "num_epochs_per_flow_schedule": num_epochs_per_flow_schedule}}
    return SimpleNamespace(opts=opts_lib.with_defaults(opts, explicit_resnet_param_update.OPTS),
                           total_batch_size=total_batch_size, epoch_iterations=epoch_iterations, world_size=1)


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.Flatten(),
                         nn.LayerNorm(4 * 6 * 6), nn.Linear(4 * 6 * 6, 2))


def learning_rates(exp: SimpleNamespace, iterations: int, module=explicit_resnet_param_update) -> list[float]:
    """The LR each training iteration runs with, the core stepping the scheduler after every one."""
    optimizer = module.build_optimizer(exp, tiny_net())
    scheduler = module.build_lr_scheduler(exp, optimizer)
    seen = []
    for _ in range(iterations):
        lrs = {group["lr"] for group in optimizer.param_groups}
        assert len(lrs) == 1  # both weight-decay groups share the LR
        seen.append(lrs.pop())
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("module", [explicit_resnet_param_update, caffe2_resnet50_default_param_update])
def test_bn_parameters_and_biases_do_not_decay_and_weights_do(module):
    net = ResNet(18, num_classes=10, small_input=True)
    optimizer = module.build_optimizer(make_exp(weight_decay=3e-4, weight_decay_bn=1e-323), net)
    decay, no_decay = optimizer.param_groups
    assert (decay["name"], decay["weight_decay"]) == ("decay", 3e-4)
    assert (no_decay["name"], no_decay["weight_decay"]) == ("no_decay", 1e-323)
    in_decay = {id(p) for p in decay["params"]}
    in_no_decay = {id(p) for p in no_decay["params"]}
    expected_no_decay = {id(p) for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    expected_no_decay.add(id(net.fc.bias))
    expected_decay = {id(m.weight) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert in_no_decay == expected_no_decay and in_decay == expected_decay
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))  # none missing or twice


def test_every_norm_layer_and_bias_goes_to_no_decay_and_shared_parameters_appear_once():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(tiny_net(), shared, nn.Sequential(shared))  # `shared` is reached twice
    conv, bn, gn, _, ln, linear = net[0]
    decay, no_decay = sgd_schedule.split_decay_groups(net)
    assert {id(p) for p in decay} == {id(conv.weight), id(linear.weight), id(shared.weight)}
    assert {id(p) for p in no_decay} == {id(p) for p in (conv.bias, bn.weight, bn.bias, gn.weight, gn.bias,
                                                          ln.weight, ln.bias, linear.bias, shared.bias)}
    assert len(decay) + len(no_decay) == len(list(net.parameters())) == 12


def test_sgd_hyperparameters_and_defaults():
    optimizer = explicit_resnet_param_update.build_optimizer(make_exp(momentum=0.8, nesterov=True), tiny_net())
    assert all(g["momentum"] == 0.8 and g["nesterov"] for g in optimizer.param_groups)
    defaults = caffe2_resnet50_default_param_update.build_optimizer(make_exp(), tiny_net())
    assert [g["weight_decay"] for g in defaults.param_groups] == [1e-4, 0.0]
    assert all(g["momentum"] == 0.9 and not g["nesterov"] and g["lr"] == BASE for g in defaults.param_groups)


def test_linear_scaling_multiplies_by_total_batch_over_reference():
    def lr(**kwargs):
        return explicit_resnet_param_update.build_optimizer(make_exp(**kwargs), tiny_net()).param_groups[0]["lr"]

    assert lr(total_batch_size=512, lr_scaling="linear") == pytest.approx(0.2)
    assert lr(total_batch_size=64, lr_scaling="linear", lr_reference_batch=128) == pytest.approx(0.05)
    assert lr(total_batch_size=512) == pytest.approx(BASE)  # no scaling unless asked


def test_linear_warmup_reaches_the_base_lr_at_the_end_of_warmup():
    lrs = learning_rates(make_exp(warmup_epochs=2, lr_schedule="constant"), 25)
    assert lrs[0] == pytest.approx(BASE / 20)
    assert lrs[9] == pytest.approx(BASE / 2)
    assert lrs[19:] == pytest.approx([BASE] * 6)


def test_step_schedule_at_given_epochs():
    lrs = learning_rates(make_exp(lr_steps=[3, 5], lr_gamma=0.5), 60)
    assert lrs[29] == pytest.approx(BASE) and lrs[30] == pytest.approx(BASE * 0.5)
    assert lrs[49] == pytest.approx(BASE * 0.5) and lrs[50] == pytest.approx(BASE * 0.25)


@pytest.mark.parametrize("module", [explicit_resnet_param_update, caffe2_resnet50_default_param_update])
def test_default_step_schedule_decays_every_flow_schedule(module):
    lrs = learning_rates(make_exp(num_epochs_per_flow_schedule=5), 101, module)
    assert lrs[49] == pytest.approx(BASE)
    assert lrs[50] == pytest.approx(BASE * 0.1)
    assert lrs[100] == pytest.approx(BASE * 0.01)


def test_warmup_then_step():
    lrs = learning_rates(make_exp(warmup_epochs=1, lr_steps=[2]), 21)
    assert lrs[4] == pytest.approx(BASE / 2)
    assert lrs[10] == pytest.approx(BASE) and lrs[20] == pytest.approx(BASE * 0.1)


def test_cosine_schedule_reaches_zero_at_num_epochs():
    lrs = learning_rates(make_exp(lr_schedule="cosine", num_epochs=4), 40)
    assert lrs[0] == pytest.approx(BASE)
    assert lrs[20] == pytest.approx(BASE / 2)
    assert 0 < lrs[39] < BASE * 0.01
    schedule = sgd_schedule.lr_schedule(make_exp(lr_schedule="cosine", num_epochs=4))
    assert schedule.factor(40) == pytest.approx(0.0) and schedule.factor(45) == pytest.approx(0.0)


def test_cosine_starts_after_warmup():
    lrs = learning_rates(make_exp(lr_schedule="cosine", num_epochs=4, warmup_epochs=1), 26)
    assert lrs[9] == pytest.approx(BASE) and lrs[10] == pytest.approx(BASE)
    assert lrs[25] == pytest.approx(BASE / 2)


def test_scheduler_state_is_plain_data_and_resumes():
    exp = make_exp(warmup_epochs=1, lr_schedule="cosine", num_epochs=3)
    optimizer = explicit_resnet_param_update.build_optimizer(exp, tiny_net())
    scheduler = explicit_resnet_param_update.build_lr_scheduler(exp, optimizer)
    for _ in range(13):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert saved["scheduler"]["lr_lambdas"] == [None, None]

    resumed_optimizer = explicit_resnet_param_update.build_optimizer(exp, tiny_net())
    resumed = explicit_resnet_param_update.build_lr_scheduler(exp, resumed_optimizer)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["scheduler"])
    scheduler.step()
    resumed.step()
    assert resumed.get_last_lr() == pytest.approx(scheduler.get_last_lr())


def test_a_warmup_rounded_to_the_whole_cosine_schedule_is_no_division_by_zero():
    schedule = sgd_schedule.lr_schedule(make_exp(lr_schedule="cosine", num_epochs=1, warmup_epochs=0.99))
    assert schedule.warmup_iters == schedule.total_iters == PER_EPOCH
    assert schedule.factor(PER_EPOCH - 1) == pytest.approx(1.0) and schedule.factor(PER_EPOCH) == pytest.approx(1.0)


@pytest.mark.parametrize("model_param, problem", [
    ({"lr_schedule": "poly"}, 'model_param.lr_schedule: must be one of "step", "cosine", "constant", got "poly"'),
    ({"lr_schedule": "cosin"}, 'model_param.lr_schedule: must be one of "step", "cosine", "constant", got "cosin"'),
    ({"lr_scaling": "sqrt"}, 'model_param.lr_scaling: must be one of "none", "linear", got "sqrt"'),
    ({"lr_steps": [30, 10]}, "model_param.lr_steps: must be a non-empty increasing list of epochs, e.g. [30, 60, 80], "
                             "got [30, 10]"),
    ({"lr_steps": []}, "model_param.lr_steps: must be a non-empty increasing list of epochs, e.g. [30, 60, 80], "
                       "got []"),
    ({"lr_steps": [0, 10]}, "model_param.lr_steps[0]: must be above 0, got 0"),
    ({"lr_steps": [10, "20"]}, 'model_param.lr_steps[1]: expected a number, got "20"'),
    ({"momentum": 1.0}, "model_param.momentum: must be below 1, got 1.0"),
    ({"momentum": 0, "nesterov": True}, "model_param.nesterov: needs model_param.momentum above 0; set momentum "
                                        "(e.g. 0.9) or nesterov false"),
    ({"weight_decay": -1}, "model_param.weight_decay: must be at least 0, got -1"),
    ({"lr_reference_batch": 0}, "model_param.lr_reference_batch: must be at least 1, got 0"),
    ({"lr_schedule": "cosine", "warmup_epochs": 10}, "model_param.warmup_epochs: must be shorter than "
                                                     "epoch_iter.num_epochs for the cosine schedule, got 10 of 10 "
                                                     "epochs"),
])
def test_bad_values_are_opts_problems_found_before_the_run(model_param, problem):
    with pytest.raises(OptsError) as raised:
        prepare(seed_command_opts(**model_param))
    assert raised.value.problems == [problem]


@pytest.mark.parametrize("key", ["model_param.base_learning_rate", "epoch_iter.num_epochs_per_flow_schedule"])
def test_a_missing_key_the_schedule_needs_is_an_opts_problem(key):
    opts = seed_command_opts()
    section, name = key.split(".")
    del opts[section][name]
    with pytest.raises(OptsError) as raised:
        prepare(opts)
    assert [p.split(";")[0] for p in raised.value.problems] == [f"{key}: missing"]


def test_null_means_the_default_for_the_schedule_opts():
    opts, _ = prepare(seed_command_opts(momentum=None, lr_steps=None, lr_schedule=None, warmup_epochs=None))
    assert opts["model_param"]["momentum"] == 0.9 and opts["model_param"]["lr_schedule"] == "step"
    assert opts["model_param"]["lr_steps"] is None and opts["model_param"]["warmup_epochs"] == 0
