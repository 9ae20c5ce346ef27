"""Input component: the generated tabular data of zoo/tabular/tabular_data.py, standardised by the training
split's statistics, generated in memory when the run starts (a fraction of a second)."""
from __future__ import annotations

import functools
from typing import Any

from playground.opts import Opt
from zoo.tabular.tabular_data import TabularData, splits

OPTS = {
    "input.num_features": Opt((int,), 24, doc="Feature columns of the generated table (a quarter of them 0/1).",
                              minimum=4),
    "input.num_train_rows": Opt((int,), 20000, doc="Rows generated for training.", minimum=1),
    "input.num_test_rows": Opt((int,), 10000, doc="Rows generated for testing.", minimum=1),
    "input.data_seed": Opt((int,), 1, doc="Seed of the generating distribution and of its samples.", minimum=0),
}


# get_dataset is called for each split; the data (and the distribution behind it) is generated once per process.
cached_splits = functools.lru_cache(maxsize=1)(splits)


def get_dataset(exp: Any, split: str) -> TabularData:
    inp = exp.opts["input"]
    train, test = cached_splits(inp["num_train_rows"], inp["num_test_rows"], inp["num_features"], inp["data_seed"])
    return train if split == "train" else test
