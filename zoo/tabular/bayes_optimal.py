"""BayesOptimal: the best possible classifier of the generated data, measured beside the model on the same
test samples, and both ROC curves drawn into the run folder."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import torch

from playground.events import EventHandler, Phase
from zoo.fixed_batch import check_png_filename, pyplot, save_figure

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class BayesOptimal(EventHandler):
    """Adds `<prefix>_bayes_accuracy` and `<prefix>_bayes_auroc` to every test row: the accuracy and AUROC of the
    generating distribution's true log-odds (the test set's `optimum_logits`) on the test samples the meters
    measure. At train end (rank 0), roc.png: the model's ROC curve and the optimum's. prefix: "test" for opts
    runs, "val" for Estimator.fit."""

    phase = Phase.ADD_TO_ROW
    adds_columns = ("*_bayes_accuracy", "*_bayes_auroc")

    def __init__(self, prefix: str = "test", filename: str = "roc.png"):
        check_png_filename(filename)
        self.prefix, self.filename = prefix, filename

    def _test_set(self, exp: AnyExp) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dataset = getattr(exp.test_dataset, "dataset", exp.test_dataset)
        if not hasattr(dataset, "optimum_logits"):
            raise ValueError(f"the test set ({type(dataset).__name__}) has no optimum_logits: BayesOptimal needs "
                             "the generated data of zoo.tabular.tabular_data")
        num = min(exp.info.num_test_sample or len(dataset), len(dataset))
        if exp.info.num_test_iter:  # the test pass reads only its first batches
            num = min(num, exp.info.num_test_iter * (exp.total_batch_size // exp.info.accumulate_grad_batches))
        features, labels = dataset.tensors[0][:num], dataset.tensors[1][:num]
        return features, labels, dataset.optimum_logits[:num]

    def on_test_end(self, exp: AnyExp) -> None:
        from torchmetrics.functional.classification import binary_auroc

        _, labels, optimum = self._test_set(exp)
        exp.add_to_row({f"{self.prefix}_bayes_accuracy": ((optimum > 0).float() == labels).float().mean().item(),
                        f"{self.prefix}_bayes_auroc": binary_auroc(optimum, labels.long()).item()})

    def on_train_end(self, exp: AnyExp) -> None:
        if exp.rank != 0 or exp.test_dataset is None:
            return
        from torchmetrics.functional.classification import binary_roc

        features, labels, optimum = self._test_set(exp)
        was_training = exp.network.training
        exp.network.eval()
        with torch.no_grad():
            scores = exp.network(features.to(exp.device)).cpu()
        exp.network.train(was_training)
        plt = pyplot()
        figure, axes = plt.subplots(figsize=(4.5, 4.5))
        for name, logits in (("model", scores), ("Bayes-optimal", optimum)):
            fpr, tpr, _ = binary_roc(logits, labels.long())
            accuracy = ((logits > 0).float() == labels).float().mean().item()
            axes.plot(fpr, tpr, label=f"{name} (accuracy {accuracy:.4f})", linestyle="-" if name == "model" else "--")
        axes.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
        axes.set(xlabel="false positive rate", ylabel="true positive rate", title=f"test ROC, {len(labels)} samples")
        axes.legend(fontsize="small", loc="lower right")
        figure.tight_layout()
        path = os.path.join(exp.folder, self.filename)
        save_figure(figure, path)
        log.info("BayesOptimal: wrote %s", path)
