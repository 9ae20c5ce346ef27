"""Dates to ISO dates through Estimator.fit: the network, data, loss and metrics of examples/seq2seq_dates.json,
built in Python (same seed: the same batches in the same order).

    python examples/fit_seq2seq.py [TRAIN_SAMPLES TEST_SAMPLES EPOCHS]
"""
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # from a checkout: the repository root holds zoo/
from playground import Estimator  # noqa: E402
from zoo.seq2seq.attention_png import AttentionHeatmap  # noqa: E402
from zoo.seq2seq.attention_seq2seq import AttentionSeq2Seq  # noqa: E402
from zoo.seq2seq.dates import SOURCE, TARGET, DatesDataset  # noqa: E402
from zoo.seq2seq.seq2seq_model import token_loss  # noqa: E402
from zoo.seq2seq.sequence_meters import SequenceExactMatch, TokenAccuracy  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the loop's progress lines
if len(sys.argv) not in (1, 4) or not all(arg.isdigit() and int(arg) > 0 for arg in sys.argv[1:]):
    print("usage: python examples/fit_seq2seq.py [TRAIN_SAMPLES TEST_SAMPLES EPOCHS] (positive integers)",
          file=sys.stderr)
    sys.exit(2)
train_samples, test_samples, epochs = map(int, sys.argv[1:]) if len(sys.argv) > 1 else (12800, 2000, 4)
torch.manual_seed(1)  # the initial weights, as `playground run` seeds them from model_param.seed
estimator = Estimator(AttentionSeq2Seq(len(SOURCE), len(TARGET)), loss=token_loss, device="cpu",
                      optimizer=lambda params: torch.optim.Adam(params, lr=0.003), handlers=[AttentionHeatmap()],
                      val_metrics=[("exact_match", SequenceExactMatch()), ("token_accuracy", TokenAccuracy())])
results = estimator.fit(DatesDataset("train", train_samples, seed=1), DatesDataset("test", test_samples, seed=1),
                        epochs=epochs, batch_size=128, seed=1)
print(f"val_exact_match {results['final']['val_exact_match']:.4f}, val_token_accuracy "
      f"{results['final']['val_token_accuracy']:.4f}; run folder {estimator.folder}")
