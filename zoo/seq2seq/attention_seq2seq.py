"""An encoder-decoder with additive attention (Bahdanau et al., 2015): a bidirectional GRU reads the source
characters; a GRU decoder writes the target one token at a time, attending over the encoder's states at each step.

Training feeds the decoder the true previous token (teacher forcing); in eval mode the network also decodes
greedily, feeding back its own choices, which is what the test metrics score.
"""
from __future__ import annotations

import torch
from torch import nn

from zoo.seq2seq.dates import BOS, EOS, PAD


class AdditiveAttention(nn.Module):
    """Scores v . tanh(W q + U k_j) of a query against every key, softmax over the source's real positions."""

    def __init__(self, key_size: int, query_size: int, size: int):
        super().__init__()
        self.key = nn.Linear(key_size, size, bias=False)
        self.query = nn.Linear(query_size, size)
        self.score = nn.Linear(size, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(context [B, V], weights [B, S]) for `query` [B, Q]; `keys` [B, S, A] are already projected (once per
        batch, by `key`); `mask` [B, S] is true at real positions."""
        scores = self.score(torch.tanh(keys + self.query(query)[:, None])).squeeze(-1)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        return (weights[:, :, None] * values).sum(dim=1), weights  # on CPU faster than a bmm of B tiny products


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of `x` [B, S, ...] reversed within its length, padding left in place. A backward GRU over
    this reads every sequence from its real end, without packing (which torch.export cannot trace)."""
    positions = torch.arange(x.shape[1], device=x.device)[None]
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return x.gather(1, index.view(*index.shape, *[1] * (x.dim() - 2)).expand_as(x))


class AttentionSeq2Seq(nn.Module):
    """inputs: {"source": [B, S] token ids, "source_lengths": [B], "decoder_input": [B, T] (<bos> then the target
    shifted right; needed in training)}. Returns {"logits": [B, T, V] teacher-forced (when decoder_input is
    given), "attention": [B, T or L, S]}, and in eval mode {"tokens": [B, L]}: the greedy decode of
    max_length steps, padding after each sequence's <eos>, with its attention."""

    def __init__(self, source_vocab: int, target_vocab: int, embedding_size: int = 32, hidden_size: int = 64,
                 attention_size: int = 32, max_length: int = 11):
        super().__init__()
        self.max_length = max_length
        self.source_embedding = nn.Embedding(source_vocab, embedding_size, padding_idx=PAD)
        self.forward_gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.backward_gru = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.bridge = nn.Linear(2 * hidden_size, hidden_size)  # the encoder's final states -> the decoder's first
        self.attention = AdditiveAttention(2 * hidden_size, hidden_size, attention_size)
        self.target_embedding = nn.Embedding(target_vocab, embedding_size, padding_idx=PAD)
        self.decoder = nn.GRUCell(embedding_size + 2 * hidden_size, hidden_size)
        self.classifier = nn.Linear(3 * hidden_size, target_vocab)

    def forward(self, inputs: dict) -> dict:
        memory, keys, mask, hidden = self.encode(inputs["source"], inputs["source_lengths"])
        output = {}
        if "decoder_input" in inputs:
            output["logits"], output["attention"] = self.teacher_forced(inputs["decoder_input"], memory, keys, mask,
                                                                        hidden)
        elif self.training:
            raise ValueError("AttentionSeq2Seq: training needs inputs['decoder_input'] (teacher forcing)")
        if not self.training:
            output["tokens"], output["attention"] = self.greedy(memory, keys, mask, hidden)
        return output

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(memory [B, S, 2H]: both directions' states, keys: memory projected for attention, mask [B, S], the
        decoder's first hidden state [B, H])."""
        embedded = self.source_embedding(source)
        forwards, _ = self.forward_gru(embedded)
        backwards = reverse_padded(self.backward_gru(reverse_padded(embedded, lengths))[0], lengths)
        memory = torch.cat([forwards, backwards], dim=-1)
        batch = torch.arange(len(source), device=source.device)
        final = torch.cat([forwards[batch, lengths - 1], backwards[:, 0]], dim=-1)  # each direction's last step
        mask = torch.arange(source.shape[1], device=source.device)[None] < lengths[:, None]
        return memory, self.attention.key(memory), mask, torch.tanh(self.bridge(final))

    def step(self, token: torch.Tensor, hidden: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor,
             mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder step from the previous token: (logits, new hidden state, attention weights)."""
        context, weights = self.attention(hidden, keys, memory, mask)  # attends with the previous state
        hidden = self.decoder(torch.cat([self.target_embedding(token), context], dim=-1), hidden)
        return self.classifier(torch.cat([hidden, context], dim=-1)), hidden, weights

    def teacher_forced(self, decoder_input: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor,
                       mask: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, weights = [], []
        for t in range(decoder_input.shape[1]):
            step_logits, hidden, step_weights = self.step(decoder_input[:, t], hidden, memory, keys, mask)
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1)

    def greedy(self, memory: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor,
               hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The most likely token at each step, fed back, for max_length steps. A sequence stops at its <eos>:
        what follows is PAD. Always max_length steps, with no exit on a data-dependent test, so that torch.export
        traces it."""
        token = torch.full((len(memory),), BOS, dtype=torch.long, device=memory.device)
        finished = torch.zeros_like(token, dtype=torch.bool)
        tokens, weights = [], []
        for _ in range(self.max_length):
            logits, hidden, step_weights = self.step(token, hidden, memory, keys, mask)
            token = logits.argmax(dim=-1)
            tokens.append(token.masked_fill(finished, PAD))
            weights.append(step_weights)
            finished = finished | (token == EOS)
        return torch.stack(tokens, dim=1), torch.stack(weights, dim=1)
