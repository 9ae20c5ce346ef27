"""Object detection from Python: examples/detection_ssd.json's SSD, data and schedule, trained by Estimator.fit.

    python examples/fit_detection.py [--train 32000] [--test 500] [--epochs 1] [--folder DIR]

Each loss part is recorded (train_loss_cls, train_loss_box); the mAP of what the network decodes in eval mode
is measured on the held-out scenes (val_map50, val_map); detections.png lands in the run folder.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from playground.estimator import Estimator  # noqa: E402
from zoo.detection.coco_map import DetectionMAP  # noqa: E402
from zoo.detection.detections_png import DrawDetections  # noqa: E402
from zoo.detection.shape_scenes import NUM_CLASSES, ShapeScenes  # noqa: E402
from zoo.detection.ssd import SSD, MultiBoxLoss  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("--train", 32000), ("--test", 500), ("--epochs", 1), ("--batch-size", 32),
                          ("--size", 64), ("--width", 32), ("--seed", 1)):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--lr", type=float, default=0.004)
    parser.add_argument("--folder", default="", help="the run folder (default: a new one under the runs root)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    net = SSD(NUM_CLASSES, args.size, args.width)
    steps = args.epochs * (args.train // args.batch_size)
    estimator = Estimator(
        net, loss=MultiBoxLoss(net.anchors, cls_weight=1.0, box_weight=1.0), device="cpu",
        optimizer=lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01),
        lr_scheduler=lambda optimizer: torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps,
                                                                           pct_start=0.1),
        val_metrics=[("map50", DetectionMAP(key="map_50")), ("map", DetectionMAP(key="map"))],
        handlers=[DrawDetections(num_images=8, min_score=0.3)])
    results = estimator.fit(ShapeScenes(args.seed, "train", args.train, args.size),
                            ShapeScenes(args.seed, "test", args.test, args.size), epochs=args.epochs,
                            batch_size=args.batch_size, seed=args.seed, checkpoint_folder=args.folder)
    final = results["final"]
    print(f"val_map50 {final['val_map50']:.3f}  val_map {final['val_map']:.3f}  in {estimator.folder}")
    return results


if __name__ == "__main__":
    main()
