"""Logistic regression on generated tabular features: a linear model with binary cross-entropy, measured by
accuracy and AUROC against the Bayes-optimal classifier of the generating distribution on the same test set."""

BENCHMARK = {
    "logistic_regression": {"opts": "examples/logistic_regression.json", "metric": "test_accuracy", "target": 0.99,
                            "relative_to": "test_bayes_accuracy", "report": ["test_auroc", "test_bayes_auroc"],
                            "minutes": 2},
}
