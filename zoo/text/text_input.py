"""Input component: sentences of the generated sentiment language (zoo/text/sentiment_language.py), encoded by
its vocabulary and generated in memory when the run starts (about a second for 10,000). Test sentences come from
`data_seed` + 1. A batch is ((padded token ids (N, L), lengths (N,)), labels (N,)), padded by the dataset's
`collate` to its longest sentence."""
from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from playground.opts import Opt
from zoo.text.sentiment_language import Vocabulary, sentence

OPTS = {
    "input.num_train_sentences": Opt((int,), 10000, doc="Sentences generated for training.", minimum=1),
    "input.num_test_sentences": Opt((int,), 2000, doc="Sentences generated for testing.", minimum=1),
    "input.data_seed": Opt((int,), 1, doc="Seed of the training sentences; the test sentences use data_seed + 1.",
                           minimum=0),
}


class Sentences(Dataset):
    """Token ids of each sentence (a 1-D tensor of its own length) and its label; `texts` keeps the words."""

    def __init__(self, texts: list[str], labels: list[int], vocabulary: Vocabulary):
        self.texts, self.vocabulary = texts, vocabulary
        self.ids = [torch.tensor(vocabulary.encode(text)) for text in texts]
        self.labels = torch.tensor(labels)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[index], self.labels[index]

    @staticmethod
    def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """((token ids padded with 0 to the longest, lengths), labels)."""
        ids, labels = zip(*items)
        return (pad_sequence(ids, batch_first=True), torch.tensor([len(i) for i in ids])), torch.stack(labels)


def make(num: int, seed: int = 1) -> Sentences:
    """Sentences 0..num-1 of the language drawn with `seed`."""
    texts, labels = zip(*(sentence(seed, i) for i in range(num)))
    return Sentences(list(texts), list(labels), Vocabulary())


def get_dataset(exp: Any, split: str) -> Sentences:
    inp = exp.opts["input"]
    if split == "train":
        return make(inp["num_train_sentences"], inp["data_seed"])
    return make(inp["num_test_sentences"], inp["data_seed"] + 1)
