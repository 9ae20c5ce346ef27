"""AttentionHeatmap: where the decoder looked, for one fixed test example, drawn as a PNG into the run folder."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from playground.errors import UsageError
from playground.events import EventHandler, Phase
from zoo.fixed_batch import check_png_filename, fixed_test_batch, pyplot, save_figure
from zoo.seq2seq.dates import EOS, SOURCE, TARGET

if TYPE_CHECKING:
    from playground.anyexp import AnyExp

log = logging.getLogger(__name__)


class AttentionHeatmap(EventHandler):
    """After every test pass (rank 0), greedy-decodes test sample `index` with the current weights and draws its
    attention weights, source characters across and decoded characters down, into `filename` in the run folder
    (replaced each time: the last one shows the final weights). The network must return "tokens" and
    "attention" in eval mode, as AttentionSeq2Seq does."""

    phase = Phase.REPORT

    def __init__(self, index: int = 0, filename: str = "attention.png"):
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"index must be a test sample's index (an integer from 0), got {index!r}")
        check_png_filename(filename)
        self.index, self.filename = index, filename

    def on_train_begin(self, exp: AnyExp) -> None:
        """An index past the test split is found before any training, not at the first test pass."""
        dataset = _test_split(exp)
        if dataset is not None and self.index >= len(dataset):
            raise UsageError(f"AttentionHeatmap: index {self.index} is past the test split's {len(dataset)} samples; "
                             "give a smaller index")

    def on_test_end(self, exp: AnyExp) -> None:
        if exp.rank != 0:
            return
        _, inputs, (target, _), output = fixed_test_batch(exp, [self.index])
        source = [SOURCE.tokens[i] for i in inputs["source"][0, :inputs["source_lengths"][0]].tolist()]
        tokens = output["tokens"][0].tolist()
        rows = tokens.index(EOS) + 1 if EOS in tokens else len(tokens)  # up to <eos>
        weights = output["attention"][0, :rows, :len(source)].float().cpu().numpy()
        decoded, expected = TARGET.decode(tokens), TARGET.decode(target[0].tolist())
        right = decoded == expected and EOS in tokens
        epoch = exp.state.epoch + exp.state.iteration / exp.epoch_iterations
        title = (f"{''.join(source)!r} -> {decoded!r}: {'right' if right else f'wrong, expected {expected!r}'} "
                 f"(epoch {epoch:.2f})")
        path = os.path.join(exp.folder, self.filename)
        heatmap(weights, source, [TARGET.tokens[t] for t in tokens[:rows]], title, path)
        log.debug("AttentionHeatmap: wrote %s", path)


def _test_split(exp: AnyExp) -> Any:
    return getattr(exp.test_dataset, "dataset", exp.test_dataset)  # a DataLoader's too


def heatmap(weights, columns: list[str], rows: list[str], title: str, path: str) -> None:
    """A PNG at `path` (written whole, then renamed into place) of `weights` [rows, columns] labelled."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(1.5 + 0.32 * len(columns), 1.6 + 0.32 * len(rows)))
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(columns)), labels=["␣" if c == " " else c for c in columns])
    axes.set_yticks(range(len(rows)), labels=rows)
    axes.set_xlabel("source characters")
    axes.set_ylabel("decoded characters")
    axes.set_title(title, fontsize="small")
    figure.colorbar(image, ax=axes, fraction=0.04, label="attention weight")
    figure.tight_layout()
    save_figure(figure, path)
