"""Input component: human-written dates and their ISO form, made on demand from the seed (nothing to build or
download). Test dates are days that never appear in training."""
from __future__ import annotations

from playground.opts import Opt
from zoo.seq2seq.dates import DatesDataset

OPTS = {
    "input.train_samples": Opt((int,), 12800, doc="Samples in the training split (each epoch draws "
                               "epoch_iter.num_train_sample_per_epoch of them).", minimum=1),
    "input.test_samples": Opt((int,), 2000, doc="Samples in the test split.", minimum=1),
    "input.test_fraction": Opt((int, float), 0.1, doc="Share of the calendar's days held out for the test split.",
                               exclusive_minimum=0, exclusive_maximum=1),
}


def get_dataset(exp, split: str) -> DatesDataset:
    inp = exp.opts["input"]
    return DatesDataset(split, inp[f"{split}_samples"], exp.seed, inp["test_fraction"])
