"""The ResNet demo end to end: the seed's own command, a short training that learns, and the speed options."""
from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import ROOT, playground, write_opts
from playground.opts import load_opts
from resnetdemo import make_lmdb


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, str]:
    """Small shapes LMDBs (64 px), built with the real make-lmdb command's code."""
    folder = tmp_path_factory.mktemp("shapes")
    paths = {}
    for split, num, seed in (("train", 1536, 1), ("test", 256, 2)):
        paths[split] = str(folder / split)
        assert make_lmdb.main(["--synthetic", "shapes", paths[split], "--num", str(num), "--size", "64",
                               "--seed", str(seed)]) == 0
    return paths


def seed_command(shapes: dict[str, str], folder) -> dict:
    """The seed README's launch command, with only its paths and device counts changed."""
    opts = json.loads((ROOT / "tests" / "seed_command.json").read_text())["opts"]
    opts["input"].update(train_input_path=shapes["train"], test_input_path=shapes["test"])
    opts["distributed"].update(num_gpus=0, num_cpus=1)
    opts["output"]["checkpoint_folder"] = str(folder)
    return opts


SHORT = ["--set", "input.loadsize=40", "--set", "input.imsize=32", "--set", "epoch_iter.batch_per_device=4",
         "--set", "epoch_iter.num_train_sample_per_epoch=8", "--set", "epoch_iter.num_test_sample=8",
         "--set", "epoch_iter.num_epochs=1", "--set", "input.num_classes=10"]


def test_seed_command_passes_dry_run(shapes, tmp_path):
    opts = seed_command(shapes, tmp_path / "run")
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts), "--dry-run")
    assert result.returncode == 0, result.stderr
    for name in ("gfs_IN1k", "IN1k_resnet", "caffe2_resnet50_default_forward", "explicit_resnet_param_update",
                 "rendezvous_filestore", "output_generator", "gen_checkpoint_path", "ComputeTopKAccuracy"):
        assert name in result.stdout


@pytest.mark.parametrize("forward, update", [("caffe2_resnet50_default_forward", "explicit_resnet_param_update"),
                                             ("explicit_resnet_forward", "caffe2_resnet50_default_param_update")])
def test_seed_command_runs_one_short_epoch(shapes, tmp_path, forward, update):
    opts = seed_command(shapes, tmp_path / "run")
    opts["model"].update(forward_pass_py=forward, parameter_update_py=update)
    if forward == "explicit_resnet_forward":
        opts["model_param"]["num_layer"] = 18
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts), *SHORT, timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"train_loss", "test_accuracy_top5", "learning_rate"} <= set(results["metrics"])
    assert (tmp_path / "run" / "model_final.pt").exists()


def test_override_no_test_model_no_checkpoint_on_the_seed_command(shapes, tmp_path):
    opts = seed_command(shapes, tmp_path / "run")
    opts["model"]["additional_override_py"] = "override_no_test_model_no_checkpoint"
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts), *SHORT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not [f for f in os.listdir(tmp_path / "run") if f.endswith(".pt")]


def quickstart_opts(shapes: dict[str, str], folder, **model_param) -> dict:
    opts = load_opts(str(ROOT / "examples" / "resnetdemo_cpu.yaml"))
    opts["input"].update(train_input_path=shapes["train"], test_input_path=shapes["test"])
    opts["output"].update(checkpoint_folder=str(folder), progress_bar=False)
    opts["model_param"].update(model_param)
    return opts


def test_short_training_on_shapes_learns(shapes, tmp_path):
    opts = quickstart_opts(shapes, tmp_path / "run", resnet_width=8, custom_bn_init=False, warmup_epochs=0)
    opts["epoch_iter"].update(num_train_sample_per_epoch=1536, num_epochs=24, num_train_iteration_per_test=72)
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts), timeout=600)
    assert result.returncode == 0, result.stderr
    accuracy = json.loads((tmp_path / "run" / "results.json").read_text())["final"]["test_accuracy_top1"]
    assert accuracy > 0.4, accuracy  # 10 classes: chance is 0.1


def two_iterations(shapes, tmp_path, name: str, **model_param) -> dict:
    """Final weights after two training iterations with `model_param` changed."""
    opts = quickstart_opts(shapes, tmp_path / name, resnet_width=8, warmup_epochs=0, **model_param)
    opts["epoch_iter"].update(num_train_sample_per_epoch=128, num_epochs=1, num_test_sample=64)
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts, f"{name}.json"), timeout=600)
    assert result.returncode == 0, result.stderr
    return torch.load(tmp_path / name / "model_final.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def baseline(shapes, tmp_path_factory):
    return two_iterations(shapes, tmp_path_factory.mktemp("baseline"), "baseline")


def max_difference(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("option, tolerance", [
    ({"channels_last": True}, 1e-4),        # the same arithmetic in another memory layout
    ({"memonger": True}, 1e-5),             # recomputation gives the same numbers
    ({"mixed_precision": "bf16"}, 5e-2),    # bf16 autocast: a bounded difference
])
def test_speed_options_keep_the_results(shapes, tmp_path, baseline, option, tolerance):
    weights = two_iterations(shapes, tmp_path, "option", **option)
    assert weights.keys() == baseline.keys()
    assert max_difference(weights, baseline) <= tolerance


def test_torch_compile_keeps_the_results(tmp_path):
    """torch.compile on the MLP example (compiling a ResNet on CPU takes minutes)."""
    opts = json.loads((ROOT / "examples" / "mlp_synthetic.json").read_text())["opts"]
    opts["epoch_iter"].update(num_train_sample_per_epoch=320, num_epochs=1, num_test_sample=128)
    finals = {}
    for compiled in (False, True):
        opts["model_param"]["compile"] = compiled
        opts["output"]["checkpoint_folder"] = str(tmp_path / str(compiled))
        result = playground("run", "--parameters-json", write_opts(tmp_path, opts), timeout=600)
        assert result.returncode == 0, result.stderr
        finals[compiled] = torch.load(tmp_path / str(compiled) / "model_final.pt", weights_only=True)["model"]
    assert max_difference(finals[True], finals[False]) <= 1e-4


def test_gpu_imagenet_example_is_valid_opts():
    """The GPU recipe cannot train here, but every key and component in it must check out."""
    result = playground("run", "--parameters-json", str(ROOT / "examples" / "resnet50_imagenet_gpu.yaml"),
                        "--dry-run", "--set", "distributed.num_gpus=0")
    assert result.returncode == 0, result.stderr
    assert "caffe2_resnet50_default_forward" in result.stdout and '"channels_last": true' in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_training_from_lmdb_workers_matches_the_cpu(shapes, tmp_path, baseline):
    """uint8 batches from a DataLoader worker, pinned, copied, and given their colour pass on the GPU."""
    opts = quickstart_opts(shapes, tmp_path / "gpu", resnet_width=8, warmup_epochs=0)
    opts["epoch_iter"].update(num_train_sample_per_epoch=128, num_epochs=1, num_test_sample=64)
    opts["input"]["decode_threads"] = 1
    opts["distributed"]["num_gpus"] = 1
    result = playground("run", "--parameters-json", write_opts(tmp_path, opts), timeout=600)
    assert result.returncode == 0, result.stderr
    weights = torch.load(tmp_path / "gpu" / "model_final.pt", weights_only=True, map_location="cpu")["model"]
    assert max_difference(weights, baseline) <= 1e-2  # cuDNN convolutions run in TF32 by default
