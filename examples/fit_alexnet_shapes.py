"""The AlexNet-style CNN on the shapes dataset through Estimator.fit: the network, data and recipe of
examples/alexnet_shapes.json, written in Python.

    python examples/fit_alexnet_shapes.py [--epochs 6] [--train 12000] [--test 1000] [--folder DIR]
"""
import argparse

import torch

from playground import Estimator
from playground.handlers import ModelStatistics
from zoo.classification.alexnet import AlexNet
from zoo.classification.predictions_png import PredictionsPng
from zoo.classification.shapes_input import make

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
for flag, default in (("--epochs", 6), ("--train", 12000), ("--test", 1000)):
    parser.add_argument(flag, type=int, default=default)
parser.add_argument("--folder", default="", help="the run folder (default: a new one under $PLAYGROUND_RUNS or ./runs)")
args = parser.parse_args()

torch.manual_seed(1)
train, test = make(args.train, size=32, seed=1), make(args.test, size=32, seed=2)  # test: other images
net = AlexNet(num_classes=10, width=24, hidden=128, dropout=0.25)
steps = args.epochs * (len(train) // 64)
estimator = Estimator(
    net, torch.nn.CrossEntropyLoss(), metrics=["accuracy"], handlers=[PredictionsPng(), ModelStatistics()],
    optimizer=torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    lr_scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=steps, pct_start=0.15))
results = estimator.fit(train, test, epochs=args.epochs, batch_size=64, seed=1, checkpoint_folder=args.folder)
print(f"val_accuracy {results['final']['val_accuracy']:.4f}; run folder {estimator.folder}")
