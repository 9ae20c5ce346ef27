"""ResNet (resnetdemo/resnet.py) and the two forward-pass components that build it from opts."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import seed_command_opts
from playground import opts as opts_lib
from playground.errors import OptsError
from playground.runner import prepare
from resnetdemo import caffe2_resnet50_default_forward, explicit_resnet_forward
from resnetdemo.resnet import ResNet


def make_exp(imsize: int = 32, num_classes: int = 10, **model_param) -> SimpleNamespace:
    opts = {"input": {"num_classes": num_classes, "imsize": imsize}, "model_param": {"memonger": False, **model_param}}
    return SimpleNamespace(opts=opts_lib.with_defaults(opts, explicit_resnet_forward.OPTS))


def problems_of(opts: dict) -> list[str]:
    with pytest.raises(OptsError) as raised:
        prepare(opts)
    return raised.value.problems


def explicit_forward_opts(**model_param) -> dict:
    """The seed command with the forward pass whose depth is an opt."""
    opts = seed_command_opts(**{"num_layer": 18, **model_param})
    opts["model"]["forward_pass_py"] = "explicit_resnet_forward"
    return opts


def batchnorms(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("num_layer, batch", [(18, 2), (34, 2), (50, 2), (101, 1), (152, 1)])
def test_every_depth_runs_forward_and_backward(num_layer, batch):
    torch.manual_seed(0)
    net = ResNet(num_layer, num_classes=7, small_input=True)
    # batch 1 keeps the deep ones cheap; BN then normalises over the 4x4 positions of the last stage
    logits = net(torch.randn(batch, 3, 32, 32))
    assert logits.shape == (batch, 7)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert len(net.blocks()) == {18: 8, 34: 16, 50: 16, 101: 33, 152: 50}[num_layer]


def test_imagenet_stem_downsamples_by_32():
    net = ResNet(18, num_classes=5).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    features = net.stages(net.stem(torch.randn(1, 3, 64, 64)))
    assert features.shape == (1, 512, 2, 2)


@pytest.mark.parametrize("num_layer, count", [(50, 25_557_032), (18, 11_689_512)])
def test_parameter_count_is_the_standard_one(num_layer, count):
    assert sum(p.numel() for p in ResNet(num_layer, num_classes=1000).parameters()) == count


def test_zero_gamma_init_sets_only_each_blocks_last_bn():
    net = ResNet(50, num_classes=10, small_input=True, zero_init_residual_gamma=0.5)
    last = {id(b.last_bn) for b in net.blocks()}
    assert {id(b.bn3) for b in net.blocks()} == last
    for bn in batchnorms(net):  # stem, bn1, bn2 and the shortcut BNs keep gamma 1
        assert torch.all(bn.weight == (0.5 if id(bn) in last else 1.0))
        assert torch.all(bn.bias == 0)


def test_caffe2_bn_init_gamma_1e_323_is_zero_and_reaches_the_basic_blocks_second_bn():
    net = explicit_resnet_forward.build_network(make_exp(num_layer=18, custom_bn_init=True, bn_init_gamma=1e-323))
    assert all(torch.all(b.bn2.weight == 0) for b in net.blocks())
    assert all(torch.all(b.bn1.weight == 1) for b in net.blocks())


def test_without_custom_bn_init_every_gamma_is_one():
    net = explicit_resnet_forward.build_network(make_exp(num_layer=18, bn_init_gamma=0.0))
    assert all(torch.all(bn.weight == 1) for bn in batchnorms(net))


def test_caffe2_bn_momentum_becomes_pytorch_momentum():
    assert explicit_resnet_forward.pytorch_bn_momentum(0.9) == 0.1
    assert explicit_resnet_forward.pytorch_bn_momentum(0.99) == pytest.approx(0.01)
    net = explicit_resnet_forward.build_network(make_exp(num_layer=18, bn_momentum=0.9, bn_epsilon=1e-3))
    assert all(bn.momentum == pytest.approx(0.1) and bn.eps == 1e-3 for bn in batchnorms(net))
    default = explicit_resnet_forward.build_network(make_exp(num_layer=18))
    assert all(bn.momentum == pytest.approx(0.1) and bn.eps == 1e-5 for bn in batchnorms(default))


def _train_step(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    net.train()
    net.zero_grad()
    nn.functional.cross_entropy(net(x), torch.tensor([0, 1])).backward()
    return {name: p.grad.clone() for name, p in net.named_parameters()}


def test_activation_checkpointing_gives_the_same_gradients_and_bn_statistics():
    torch.manual_seed(0)
    plain = ResNet(18, num_classes=4, small_input=True)
    checkpointed = ResNet(18, num_classes=4, small_input=True, activation_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    calls = []
    checkpointed.stages[0].register_forward_pre_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 3, 16, 16)

    for _ in range(2):  # the second step starts from statistics the first one updated
        expected, got = _train_step(plain, x), _train_step(checkpointed, x)
        for name, grad in expected.items():
            torch.testing.assert_close(got[name], grad, rtol=1e-6, atol=1e-7, msg=name)
    assert len(calls) == 4  # forward and recomputation in backward, twice: checkpointing was really on
    # recomputation must not update the running statistics a second time
    for name, buffer in plain.state_dict().items():
        torch.testing.assert_close(checkpointed.state_dict()[name], buffer, rtol=1e-6, atol=1e-7, msg=name)

    checkpointed.eval()
    with torch.no_grad():
        torch.testing.assert_close(checkpointed(x), plain.eval()(x))


def test_explicit_forward_reads_depth_stem_and_memonger():
    net = explicit_resnet_forward.build_network(make_exp(imsize=32, num_layer=34, memonger=True))
    assert net.num_layer == 34 and net.activation_checkpointing
    assert net.stem[0].kernel_size == (3, 3) and net.fc.out_features == 10
    assert explicit_resnet_forward.build_network(make_exp(imsize=224, num_layer=18)).stem[0].kernel_size == (7, 7)
    forced = explicit_resnet_forward.build_network(make_exp(imsize=32, num_layer=18, small_stem=False))
    assert forced.stem[0].kernel_size == (7, 7) and not forced.activation_checkpointing


def test_caffe2_default_forward_is_always_resnet50():
    net = caffe2_resnet50_default_forward.build_network(make_exp(imsize=224, num_classes=1000, bn_momentum=0.9))
    assert net.num_layer == 50
    assert [len(stage) for stage in net.stages] == [3, 4, 6, 3]
    assert sum(p.numel() for p in net.parameters()) == 25_557_032
    assert problems_of(seed_command_opts(num_layer=101)) == [
        'model_param.num_layer: is 101, but caffe2_resnet50_default_forward is always ResNet-50; remove num_layer or '
        'set "forward_pass_py": "explicit_resnet_forward"']
    prepare(seed_command_opts(num_layer=50))


def test_bad_or_missing_num_layer_is_an_opts_problem():
    assert problems_of(explicit_forward_opts(num_layer=20)) == [
        "model_param.num_layer: must be one of 18, 34, 50, 101, 152, got 20"]
    opts = explicit_forward_opts()
    del opts["model_param"]["num_layer"]
    assert [p.split(";")[0] for p in problems_of(opts)] == ["model_param.num_layer: missing"]
    with pytest.raises(ValueError, match="num_layer must be one of"):
        ResNet(20, num_classes=10)


@pytest.mark.parametrize("model_param, problem", [
    ({"bn_momentum": 1.5}, "model_param.bn_momentum: must be at most 1, got 1.5"),
    ({"bn_epsilon": 0}, "model_param.bn_epsilon: must be above 0, got 0"),
    ({"memonger": "yes"}, 'model_param.memonger: expected true or false, got "yes"'),
    ({"resnet_width": 0}, "model_param.resnet_width: must be at least 1, got 0"),
    ({"resnet_width": -16}, "model_param.resnet_width: must be at least 1, got -16"),
    ({"resnet_width": 1.5}, "model_param.resnet_width: expected an integer, got 1.5"),
    ({"resnet_width": True}, "model_param.resnet_width: expected an integer, got true"),
])
def test_bad_bn_width_and_memory_opts_are_opts_problems_naming_the_key(model_param, problem):
    assert problems_of(explicit_forward_opts(**model_param)) == [problem]


def test_bad_num_classes_names_the_key():
    opts = explicit_forward_opts()
    opts["input"]["num_classes"] = 0
    assert problems_of(opts) == ["input.num_classes: must be at least 1, got 0"]


def test_a_resnet_of_width_0_is_refused_by_the_network_too():
    with pytest.raises(ValueError, match="width must be a positive number of channels"):
        ResNet(18, num_classes=10, width=0)
