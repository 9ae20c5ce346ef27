"""Training images/s of ResNets through playground against the same model in a handwritten PyTorch loop.

Both sides train the same ResNet (resnetdemo.resnet) with SGD on the same in-memory images, so the ratio is the
cost of the framework. Per-step time is (time of a long run - time of a short run) / (extra steps), so start-up
cancels; rounds are interleaved and medians reported.

    python benchmarks/resnet_throughput.py                       # CPU: ResNet-18 and ResNet-50, 64 px, batch 32
    python benchmarks/resnet_throughput.py --gpu                 # GPU: ResNet-50, 224 px, batch 256, channels_last,
                                                                 # bf16 autocast and TF32; plus LMDB vs in-memory data
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]
from playground import runner  # noqa: E402
from playground.opts import load_opts  # noqa: E402
from resnetdemo.resnet import ResNet  # noqa: E402

NUM_IMAGES = 512


class InMemoryImages(torch.utils.data.Dataset):
    """Random images and labels held in memory: the input costs nothing, so only the loops are compared."""

    def __init__(self, size: int):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(NUM_IMAGES, 3, size, size, generator=generator)
        self.labels = torch.randint(1000, (NUM_IMAGES,), generator=generator)

    def __len__(self) -> int:
        return NUM_IMAGES

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]

    def get_batch(self, indices: list[int]):
        index = torch.tensor(indices)
        return self.images[index], self.labels[index]


def get_dataset(exp, split: str) -> InMemoryImages:
    """This file is also the input component of the playground side (`input_name_py: resnet_throughput`)."""
    return InMemoryImages(exp.opts["input"]["imsize"])


def opts_for(args, steps: int, folder: str, lmdb: str = "") -> dict:
    opts = load_opts(os.path.join(ROOT, "examples", "resnetdemo_cpu.yaml"))
    opts["input"].update(input_name_py="gfs_IN1k" if lmdb else "resnet_throughput", imsize=args.size,
                         loadsize=args.size, num_classes=1000, decode_threads=args.workers if lmdb else 0,
                         train_input_path=lmdb, test_input_path=lmdb)
    opts["model"]["additional_override_py"] = "override_no_test_model_no_checkpoint"
    opts["model_param"].update(num_layer=args.layers, resnet_width=64, small_stem=False, custom_bn_init=False,
                               lr_schedule="constant", warmup_epochs=0, nesterov=False, weight_decay=0.0,
                               channels_last=args.gpu, mixed_precision="bf16" if args.gpu and args.amp else "")
    opts["epoch_iter"].update(num_train_sample_per_epoch=steps * args.batch, num_epochs=1, batch_per_device=args.batch,
                              num_train_iteration_per_test=0)
    opts["distributed"]["num_gpus"] = 1 if args.gpu else 0
    opts["output"].update(checkpoint_folder=folder, metrics=[], plots=[], progress_bar=False,
                          record_every_iters=max(steps, 1))
    return opts


def playground_run(args, steps: int, lmdb: str = "") -> float:
    with tempfile.TemporaryDirectory() as folder:
        opts, components = runner.prepare(opts_for(args, steps, folder, lmdb))
        started = time.perf_counter()
        runner.run(opts, components, folder)
        synchronize(args)
        return time.perf_counter() - started


def handwritten_run(args, steps: int) -> float:
    """The loop people write by hand, with the same model, data, optimizer and precision."""
    started = time.perf_counter()
    device = torch.device("cuda" if args.gpu else "cpu")
    dataset = InMemoryImages(args.size)
    model = ResNet(args.layers, 1000).to(device)
    if args.gpu:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(steps):
        index = torch.randint(NUM_IMAGES, (args.batch,))
        x, y = dataset.images[index].to(device, non_blocking=True), dataset.labels[index].to(device)
        if args.gpu:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.gpu and args.amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(args)
    return time.perf_counter() - started


def synchronize(args) -> None:
    if args.gpu:
        torch.cuda.synchronize()


def per_step(run, args, **kwargs) -> float:
    return (run(args, args.long, **kwargs) - run(args, args.short, **kwargs)) / (args.long - args.short)


def build_lmdb(args, folder: str) -> str:
    from resnetdemo import make_lmdb

    path = os.path.join(folder, "lmdb")
    assert make_lmdb.main(["--synthetic", "shapes", path, "--num", str(args.lmdb_images), "--size",
                           str(args.size + 32)]) == 0
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="ResNet-50, 224 px, batch 256 on cuda:0")
    parser.add_argument("--layers", type=int, nargs="*", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--lmdb-images", type=int, default=20000, help="GPU: images in the LMDB comparison")
    parser.add_argument("--workers", type=int, default=max(os.cpu_count() - 2, 1), help="GPU: decode workers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.size, args.batch = (224, 256) if args.gpu else (64, 32)
    args.short, args.long = (10, 60) if args.gpu else (3, 9)
    if args.gpu:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    for layers in args.layers or ([50] if args.gpu else [18, 50]):
        args.layers = layers
        for amp in ([True, False] if args.gpu else [False]):
            args.amp = amp
            handwritten, playground = [], []
            for round_ in range(args.rounds):  # alternate which goes first
                pair = [(handwritten, handwritten_run), (playground, playground_run)]
                for times, run in pair if round_ % 2 == 0 else pair[::-1]:
                    times.append(per_step(run, args))
            hand, ours = statistics.median(handwritten), statistics.median(playground)
            label = f"ResNet-{layers} {args.size}px batch {args.batch}" + (
                f" {'bf16 AMP' if amp else 'TF32'} channels_last" if args.gpu else f" {args.threads} threads")
            print(f"{label}: handwritten {args.batch / hand:8.1f} img/s, playground {args.batch / ours:8.1f} img/s, "
                  f"ratio {hand / ours:.3f} (goal >= 0.98)")
    if args.gpu:
        args.amp = True
        with tempfile.TemporaryDirectory() as folder:
            lmdb = build_lmdb(args, folder)
            synthetic = statistics.median(per_step(playground_run, args) for _ in range(args.rounds))
            from_lmdb = statistics.median(per_step(playground_run, args, lmdb=lmdb) for _ in range(args.rounds))
        print(f"ResNet-50 AMP: in-memory {args.batch / synthetic:.1f} img/s, LMDB ({args.workers} workers) "
              f"{args.batch / from_lmdb:.1f} img/s, ratio {synthetic / from_lmdb:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
