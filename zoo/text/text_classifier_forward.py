"""Forward-pass component: a sentence classifier over the sentiment language's vocabulary, by name: "bilstm"
(zoo/text/bilstm.py), "textcnn" (textcnn.py) or "bag_of_words" (bag_of_words.py, the order-blind baseline)."""
from __future__ import annotations

from typing import Any

from torch import nn

from playground.opts import Opt
from zoo.text.bag_of_words import BagOfWords
from zoo.text.bilstm import BiLSTM
from zoo.text.sentiment_language import Vocabulary
from zoo.text.textcnn import TextCNN

NETWORKS = {"bilstm": BiLSTM, "textcnn": TextCNN, "bag_of_words": BagOfWords}
OPTS = {
    "model_param.text_network": Opt((str,), "bilstm", doc="The sentence classifier: bilstm, textcnn or "
                                    "bag_of_words (the baseline that cannot see word order).",
                                    choices=tuple(NETWORKS)),
    "model_param.embedding_dim": Opt((int,), 64, doc="Size of the word embeddings.", minimum=1),
}


def build_network(exp: Any) -> nn.Module:
    param = exp.opts["model_param"]
    return NETWORKS[param["text_network"]](len(Vocabulary()), 2, param["embedding_dim"])
