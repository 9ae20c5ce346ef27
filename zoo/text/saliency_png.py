"""TokenSaliencyPng: which words each prediction rests on, for the first test sentences, drawn into the run
folder."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import torch

from playground import data
from playground.events import EventHandler
from zoo.fixed_batch import check_png_filename, pyplot, save_figure

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)
LABELS = ("negative", "positive")


class TokenSaliencyPng(EventHandler):
    """At train end (rank 0), saliency.png: the first `num_sentences` test sentences, each word shaded by its
    saliency for the predicted class (|gradient x embedding| of its score, scaled to the sentence's largest), with
    the prediction (green when right, red with the true label when wrong). A model that understands "not bad"
    shades "not" as well as "bad"; the bag-of-words baseline cannot. Works on any network whose first
    torch.nn.Embedding embeds the tokens, given a test set with a `vocabulary`."""

    def __init__(self, num_sentences: int = 12, filename: str = "saliency.png"):
        if isinstance(num_sentences, bool) or not isinstance(num_sentences, int) or num_sentences < 1:
            raise ValueError(f"num_sentences must be a positive integer, got {num_sentences!r}")
        check_png_filename(filename)
        self.num_sentences, self.filename = num_sentences, filename

    def on_train_end(self, exp: AnyExp) -> None:
        if exp.rank != 0 or exp.test_dataset is None:
            return
        dataset = getattr(exp.test_dataset, "dataset", exp.test_dataset)
        (tokens, lengths), labels = data.fetch(dataset, list(range(min(self.num_sentences, len(dataset)))))
        saliency, predicted = token_saliency(exp.network, data.to_device((tokens, lengths), exp.device, dataset))
        self.draw(dataset.vocabulary, tokens, lengths, saliency, predicted, labels, os.path.join(exp.folder,
                                                                                                 self.filename))
        log.info("TokenSaliencyPng: wrote %s", os.path.join(exp.folder, self.filename))

    @staticmethod
    def draw(vocabulary, tokens, lengths, saliency, predicted, labels, path: str) -> None:
        plt = pyplot()
        rows = len(tokens)
        figure, axes = plt.subplots(figsize=(11, 0.36 * rows + 0.5))
        axes.set(xlim=(0, 1), ylim=(rows, -0.6))
        axes.axis("off")
        shade = plt.get_cmap("Oranges")
        for row in range(rows):
            x = 0.0
            for position in range(int(lengths[row])):
                word = vocabulary.itos[int(tokens[row, position])]
                axes.text(x, row, word, family="monospace", fontsize=8, va="center",
                          bbox={"facecolor": shade(0.85 * float(saliency[row, position])), "edgecolor": "none",
                                "pad": 1.5})
                x += (len(word) + 1) * 0.0068
            right = int(predicted[row]) == int(labels[row])
            verdict = LABELS[int(predicted[row])] + ("" if right else f" (true: {LABELS[int(labels[row])]})")
            axes.text(0.8, row, verdict, fontsize=8, va="center", color="green" if right else "red")
        axes.set_title("word saliency for the predicted class (darker: more)", fontsize=9)
        figure.tight_layout()
        save_figure(figure, path)


def token_saliency(network: torch.nn.Module, inputs: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(saliency (N, L) in [0, 1], predicted classes (N,)) of `network` in eval mode on (tokens, lengths):
    |gradient x input| of the predicted class's score at each token's embedding, summed over the embedding and
    divided by the sentence's largest. Uses torch.autograd.grad, so no parameter's .grad changes."""
    embedding = next((m for m in network.modules() if isinstance(m, torch.nn.Embedding)), None)
    if embedding is None:
        raise ValueError(f"{type(network).__name__} has no torch.nn.Embedding to measure saliency at")
    captured = []
    hook = embedding.register_forward_hook(lambda module, args, output: captured.append(output))
    was_training = network.training
    network.eval()
    try:  # cuDNN's RNN backward needs training mode; the plain kernels compute the same in eval mode
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            scores = network(inputs)
            predicted = scores.argmax(dim=-1)
            (gradient,) = torch.autograd.grad(scores.gather(1, predicted[:, None]).sum(), captured[0])
    finally:
        hook.remove()
        network.train(was_training)
    saliency = (gradient * captured[0]).sum(dim=-1).abs().detach()
    tokens, lengths = inputs
    saliency = saliency.masked_fill(torch.arange(tokens.shape[1], device=saliency.device) >= lengths[:, None].to(
        saliency.device), 0)
    return (saliency / saliency.amax(dim=1, keepdim=True).clamp_min(1e-12)).cpu(), predicted.cpu()
