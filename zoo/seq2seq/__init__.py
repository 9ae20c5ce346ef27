"""Sequence-to-sequence with attention: dates as people write them ("3rd of March 2021", "03/03/21",
"Mar 3, 21") to ISO dates ("2021-03-03"), character by character; a GRU encoder-decoder with additive attention,
teacher-forced in training and greedy-decoded in test passes; token cross-entropy with padding masked; exact-match
sequence accuracy and token accuracy, and the attention of one test example drawn as a heat map."""

BENCHMARK = {
    "seq2seq_dates": {"opts": "examples/seq2seq_dates.json", "metric": "test_exact_match", "target": 0.95,
                      "minutes": 10, "report": ["test_token_accuracy"]},
}
