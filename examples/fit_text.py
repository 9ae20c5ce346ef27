"""Sentiment classification of the generated language through Estimator.fit: the BiLSTM, the TextCNN and the
bag-of-words baseline of examples/text_bilstm.json, text_textcnn.json and text_bow.json, on the same data and
recipe, written in Python; prints each one's test accuracy (the baseline, blind to word order, scores lower).

    python examples/fit_text.py [--network bilstm|textcnn|bag_of_words]... [--epochs 3] [--train 10000]
                                [--test 2000] [--folder DIR]
"""
import argparse
import os

import torch

from playground import Estimator
from playground.meters import TorchMetric
from zoo.text.text_classifier_forward import NETWORKS
from zoo.text.saliency_png import TokenSaliencyPng
from zoo.text.text_input import make

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
for flag, default in (("--epochs", 3), ("--train", 10000), ("--test", 2000)):
    parser.add_argument(flag, type=int, default=default)
parser.add_argument("--network", action="append", choices=list(NETWORKS), help="default: all three")
parser.add_argument("--folder", default="", help="a folder for the runs, one per network (default: under ./runs)")
args = parser.parse_args()

train, test = make(args.train, seed=1), make(args.test, seed=2)  # (padded ids, lengths) batches, by collate
for name in args.network or list(NETWORKS):
    torch.manual_seed(1)
    net = NETWORKS[name](len(train.vocabulary), num_classes=2, embedding_dim=64)
    steps = args.epochs * (len(train) // 64)
    estimator = Estimator(
        net, torch.nn.CrossEntropyLoss(), handlers=[TokenSaliencyPng()], optimizer=torch.optim.Adam(net.parameters()),
        metrics=["accuracy", ("macro_f1", TorchMetric("MulticlassF1Score", {"num_classes": 2, "average": "macro"},
                                                      blob_name=["output", "label"]))],
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.1))
    final = estimator.fit(train, test, epochs=args.epochs, batch_size=64, seed=1,
                          checkpoint_folder=os.path.join(args.folder, name) if args.folder else "")["final"]
    print(f"{name}: val_accuracy {final['val_accuracy']:.4f}, val_macro_f1 {final['val_macro_f1']:.4f}; run folder "
          f"{estimator.folder}", flush=True)
