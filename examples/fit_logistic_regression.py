"""Logistic regression on the generated tabular data through Estimator.fit: the network, data and recipe of
examples/logistic_regression.json, written in Python, measured against the Bayes-optimal classifier.

    python examples/fit_logistic_regression.py [--epochs 10] [--train 20000] [--test 10000] [--folder DIR]
"""
import argparse

import torch

from playground import Estimator
from playground.meters import TorchMetric
from zoo.tabular.bayes_optimal import BayesOptimal
from zoo.tabular.logistic_regression import LogisticRegression
from zoo.tabular.tabular_data import splits

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
for flag, default in (("--epochs", 10), ("--train", 20000), ("--test", 10000)):
    parser.add_argument(flag, type=int, default=default)
parser.add_argument("--folder", default="", help="the run folder (default: a new one under $PLAYGROUND_RUNS or ./runs)")
args = parser.parse_args()

torch.manual_seed(1)
train, test = splits(args.train, args.test, num_features=24, seed=1)
net = LogisticRegression(num_features=24)
steps = args.epochs * (len(train) // 256)
estimator = Estimator(
    net, torch.nn.BCEWithLogitsLoss(), handlers=[BayesOptimal(prefix="val")],
    metrics=[("accuracy", TorchMetric("BinaryAccuracy", blob_name=["output", "label"])),
             ("auroc", TorchMetric("BinaryAUROC", blob_name=["output", "label"]))],
    optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
    lr_scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps))
final = estimator.fit(train, test, epochs=args.epochs, batch_size=256, seed=1, checkpoint_folder=args.folder)["final"]
print(f"val_accuracy {final['val_accuracy']:.4f} (Bayes-optimal {final['val_bayes_accuracy']:.4f}, ratio "
      f"{final['val_accuracy'] / final['val_bayes_accuracy']:.4f}); val_auroc {final['val_auroc']:.4f} (Bayes-optimal "
      f"{final['val_bayes_auroc']:.4f}); run folder {estimator.folder}")
