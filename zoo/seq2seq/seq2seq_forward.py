"""Forward-pass component: the GRU encoder-decoder with additive attention, over the dates' vocabularies."""
from __future__ import annotations

import torch

from playground.opts import Opt
from zoo.seq2seq.attention_seq2seq import AttentionSeq2Seq
from zoo.seq2seq.dates import SOURCE, TARGET

OPTS = {
    "model_param.embedding_size": Opt((int,), 32, doc="Width of the character embeddings.", minimum=1),
    "model_param.hidden_size": Opt((int,), 64, doc="Width of each GRU's state (the encoder has two).", minimum=1),
    "model_param.attention_size": Opt((int,), 32, doc="Width of the additive attention's hidden layer.", minimum=1),
    "model_param.max_decode_length": Opt((int,), 11, doc="Steps of greedy decoding (an ISO date and <eos>: 11).",
                                         minimum=1),
}


def build_network(exp) -> torch.nn.Module:
    param = exp.opts["model_param"]
    return AttentionSeq2Seq(len(SOURCE), len(TARGET), param["embedding_size"], param["hidden_size"],
                            param["attention_size"], param["max_decode_length"])
