"""The segmentation example through Estimator.fit: the FCN on shapes images with per-pixel masks, as
examples/segmentation_fcn.json trains it from opts (same seed, same recipe):

    python examples/fit_segmentation.py [--train-images 8000] [--test-images 1000] [--epochs 8] [--folder DIR]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # from a checkout: the repository root holds zoo/
from playground import Estimator  # noqa: E402
from zoo.segmentation.confusion_meters import MeanIoU, PixelAccuracy  # noqa: E402
from zoo.segmentation.fcn import FCN  # noqa: E402
from zoo.segmentation.overlay_png import SegmentationOverlay  # noqa: E402
from zoo.segmentation.shape_masks import NUM_CLASSES  # noqa: E402
from zoo.segmentation.shape_masks_input import ShapeMasks  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--train-images", type=int, default=8000)
parser.add_argument("--test-images", type=int, default=1000)
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--folder", default="", help="run folder (default: a new one under the runs root)")
args = parser.parse_args()

torch.manual_seed(1)  # the initial weights, as `playground run` seeds them from model_param.seed
net, batch_size, lr = FCN(NUM_CLASSES), 32, 0.01
steps = args.epochs * (args.train_images // batch_size)
estimator = Estimator(
    net, loss=torch.nn.CrossEntropyLoss(), device="cpu",
    optimizer=torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01),
    lr_scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15),
    metrics=[("miou", MeanIoU(["output", "label"])), ("pixel_accuracy", PixelAccuracy(["output", "label"]))],
    handlers=[SegmentationOverlay()])
results = estimator.fit(ShapeMasks(1, "train", args.train_images), ShapeMasks(1, "test", args.test_images),
                        epochs=args.epochs, batch_size=batch_size, seed=1, checkpoint_folder=args.folder,
                        opts={"output.record_every_iters": 25})
print(f"val_miou {results['final']['val_miou']:.4f} val_pixel_accuracy {results['final']['val_pixel_accuracy']:.4f}"
      f" in {estimator.folder}")
