"""Forward-pass component: logistic regression (a linear layer) over input.num_features columns."""
from __future__ import annotations

from typing import Any

from zoo.tabular.logistic_regression import LogisticRegression


def build_network(exp: Any) -> LogisticRegression:
    return LogisticRegression(exp.opts["input"]["num_features"])
