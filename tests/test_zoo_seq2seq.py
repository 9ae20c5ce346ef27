"""The model zoo's sequence-to-sequence task (zoo/seq2seq): human-written dates to ISO dates with a GRU
encoder-decoder and additive attention.

Unit tests pin the hard parts: every format parses back to its date, samples are a function of (seed, split,
index) with held-out test days, collate pads with lengths, the loss ignores padding, the network ignores its
batch's padding, greedy decoding stops at <eos>, the meters are exact. End-to-end tests run both routes tiny: the
real `playground run` (one process and two) and examples/fit_seq2seq.py; a run stopped mid-epoch resumes exactly.
"""
from __future__ import annotations

import calendar
import datetime
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from playground import runner
from playground.anyexp import AnyExp
from playground.errors import Stopped, UsageError
from playground.handlers import DumpGraph
from playground.state import StopRequest
from zoo.seq2seq.attention_png import AttentionHeatmap
from zoo.seq2seq.attention_seq2seq import AttentionSeq2Seq
from zoo.seq2seq.dates import BOS, EOS, FORMATS, PAD, SOURCE, TARGET, DatesDataset, human, split_days
from zoo.seq2seq.seq2seq_model import token_loss
from zoo.seq2seq.sequence_meters import SequenceExactMatch, TokenAccuracy

EXAMPLE = ROOT / "examples" / "seq2seq_dates.json"
# 3 iterations of 128 per epoch, 2 epochs; 100 test samples: with 64 per process, rank 1 tests a short last batch.
TINY = {"input.train_samples": 384, "input.test_samples": 100, "epoch_iter.num_train_sample_per_epoch": 384,
        "epoch_iter.num_test_sample": 100, "epoch_iter.num_epochs": 2, "output.record_every_iters": 1,
        "output.progress_bar": False, "distributed.rendezvous_timeout_s": 30}




@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the subprocesses get: two threads on this shared 2-core machine mostly wait on each
    other (a step can take ten times longer)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- the data

MONTH_NAMES = list(calendar.month_name)[1:]  # an independent source of the names the generator writes
DAY_NAMES = list(calendar.day_name)
FIELD_PATTERNS = {
    "d": r"(?P<d>\d{1,2})", "dd": r"(?P<d>\d{2})", "dth": r"(?P<d>\d{1,2})(?P<suffix>st|nd|rd|th)",
    "m": r"(?P<m>\d{1,2})", "mm": r"(?P<m>\d{2})", "Month": f"(?P<month>{'|'.join(MONTH_NAMES)})",
    "Mon": f"(?P<mon>{'|'.join(n[:3] for n in MONTH_NAMES)})", "yy": r"(?P<yy>\d{2})", "yyyy": r"(?P<yyyy>\d{4})",
    "Weekday": f"(?P<weekday>{'|'.join(DAY_NAMES)})", "Wkd": f"(?P<wkd>{'|'.join(n[:3] for n in DAY_NAMES)})"}


def parse(text: str, fmt: str) -> datetime.date | None:
    """The date `text` names if it is written in `fmt` (any case), else None: a reader independent of the writer."""
    parts = re.split(r"\{(\w+)\}", fmt)
    pattern = "".join(FIELD_PATTERNS[p] if i % 2 else re.escape(p) for i, p in enumerate(parts))
    match = re.fullmatch(pattern, text, re.IGNORECASE)
    if match is None:
        return None
    g = {k: v for k, v in match.groupdict().items() if v is not None}
    names = [n.lower() for n in MONTH_NAMES]
    month = int(g["m"]) if "m" in g else 1 + [n[:len(g.get("month") or g["mon"])] for n in names].index(
        (g.get("month") or g["mon"]).lower())
    year = int(g["yyyy"]) if "yyyy" in g else (2000 if int(g["yy"]) < 50 else 1900) + int(g["yy"])
    try:
        date = datetime.date(year, month, int(g["d"]))
    except ValueError:
        return None
    suffix = "th" if date.day in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(date.day % 10, "th")
    weekday = DAY_NAMES[date.weekday()].lower()
    if g.get("suffix", suffix).lower() != suffix or g.get("weekday", weekday).lower() != weekday or \
            g.get("wkd", weekday[:3]).lower() != weekday[:3]:
        return None
    return date


def test_every_format_parses_back_to_its_date_and_no_text_names_two_dates():
    edges = [datetime.date(y, m, d) for y, m, d in [(1950, 1, 1), (1999, 12, 31), (2000, 2, 29), (2049, 12, 31),
                                                    (2021, 3, 1), (2021, 3, 2), (2021, 3, 3), (2021, 3, 11),
                                                    (2021, 3, 12), (2021, 3, 13), (2021, 3, 21), (2021, 3, 22),
                                                    (2021, 3, 23), (2021, 5, 31), (1987, 9, 14)]]
    days = edges + split_days(0, 0.1)["train"][::1500]
    for fmt in FORMATS:
        for date in days:
            for case in ("", "lower", "upper"):
                text = human(date, fmt, case)
                assert parse(text, fmt) == date, (fmt, text)
                assert {parse(text, other) for other in FORMATS} <= {None, date}, text


def test_samples_are_a_function_of_seed_split_and_index_with_held_out_test_days():
    train, again, other = DatesDataset("train", 400, seed=3), DatesDataset("train", 400, seed=3), \
        DatesDataset("train", 400, seed=4)
    assert [train.text(i) for i in range(400)] == [again.text(i) for i in range(400)]
    assert [train.text(i) for i in range(50)] != [other.text(i) for i in range(50)]
    test = DatesDataset("test", 400, seed=3)
    assert not set(train.days) & set(test.days) and 0.08 < len(test.days) / (len(train.days) + len(test.days)) < 0.12
    train_days = {d.isoformat() for d in train.days}
    used_formats = set()
    for dataset in (train, test):
        for i in range(len(dataset)):
            text, iso = dataset.text(i)
            parsed = {fmt: parse(text, fmt) for fmt in FORMATS}
            assert datetime.date.fromisoformat(iso) in parsed.values(), text
            used_formats |= {fmt for fmt, date in parsed.items() if date is not None}
            assert (iso in train_days) == (dataset is train)
    assert used_formats == set(FORMATS)
    assert train[7] == (SOURCE.encode(train.text(7)[0]), TARGET.encode(train.text(7)[1], eos=True))
    with pytest.raises(IndexError):
        train.text(400)


def test_collate_pads_sources_and_targets_and_shifts_the_decoder_input():
    items = [([5, 6, 7], [4, 5, EOS]), ([8], [6, EOS]), ([9, 10], [7, 8, 9, EOS])]
    inputs, (target, target_lengths) = DatesDataset.collate(items)
    assert inputs["source"].tolist() == [[5, 6, 7], [8, PAD, PAD], [9, 10, PAD]]
    assert inputs["source_lengths"].tolist() == [3, 1, 2] and target_lengths.tolist() == [3, 2, 4]
    assert target.tolist() == [[4, 5, EOS, PAD], [6, EOS, PAD, PAD], [7, 8, 9, EOS]]
    # <bos> then the target shifted right; <eos> is never fed back: padding from there on
    assert inputs["decoder_input"].tolist() == [[BOS, 4, 5, PAD], [BOS, 6, PAD, PAD], [BOS, 7, 8, 9]]


def test_the_loss_ignores_padding():
    torch.manual_seed(0)
    target, lengths = torch.tensor([[4, 5, EOS, PAD], [6, EOS, PAD, PAD]]), torch.tensor([3, 2])
    logits = torch.randn(2, 4, len(TARGET))
    loss = token_loss({"logits": logits}, (target, lengths))
    real = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits[real], target[real]))
    changed_logits, changed_target = logits.clone(), target.clone()
    changed_logits[~real] = 100 * torch.randn_like(changed_logits[~real])
    changed_target[~real] = 7
    assert torch.equal(loss, token_loss({"logits": changed_logits}, (changed_target, lengths)))


# ---------------------------------------------------------------------------------------------- the network


def test_a_sample_decodes_the_same_alone_and_padded_in_a_batch():
    torch.manual_seed(0)
    network = AttentionSeq2Seq(len(SOURCE), len(TARGET), 8, 16, 8).eval()
    dataset = DatesDataset("train", 50)
    long_one = max(range(50), key=lambda i: len(dataset[i][0]))
    short_one = min(range(50), key=lambda i: len(dataset[i][0]))
    alone, _ = DatesDataset.collate([dataset[short_one]])
    batch, _ = DatesDataset.collate([dataset[long_one], dataset[short_one]])
    assert batch["source"].shape[1] > alone["source"].shape[1]
    with torch.no_grad():
        a, b = network(alone), network(batch)
    width = alone["source"].shape[1]
    assert torch.allclose(a["logits"][0], b["logits"][1], atol=1e-5)
    assert torch.equal(a["tokens"][0], b["tokens"][1])
    assert torch.allclose(a["attention"][0], b["attention"][1, :, :width], atol=1e-6)
    assert (b["attention"][1, :, width:] == 0).all()  # no attention on padding


class Scripted(AttentionSeq2Seq):
    """Emits script[b, t] at step t whatever it is fed, and records what it was fed."""

    def __init__(self, script: torch.Tensor):
        super().__init__(len(SOURCE), len(TARGET), 4, 4, 4, max_length=script.shape[1])
        self.script, self.fed = script, []

    def step(self, token, hidden, memory, keys, mask):
        self.fed.append(token.clone())
        _, hidden, weights = super().step(token, hidden, memory, keys, mask)
        t = len(self.fed) - 1
        return torch.nn.functional.one_hot(self.script[:, t], len(TARGET)).float(), hidden, weights


def test_greedy_decoding_feeds_back_its_choice_and_stops_at_eos():
    script = torch.tensor([[4, EOS, 5, 6], [4, 5, 6, 7], [EOS, 4, EOS, 4]])
    network = Scripted(script).eval()
    inputs, _ = DatesDataset.collate([([5, 6], [4, EOS])] * 3)
    del inputs["decoder_input"]  # decoding needs no target
    with torch.no_grad():
        output = network(inputs)
    assert output["tokens"].tolist() == [[4, EOS, PAD, PAD], [4, 5, 6, 7], [EOS, PAD, PAD, PAD]]
    assert output["attention"].shape == (3, 4, 2) and "logits" not in output
    assert [t.tolist() for t in network.fed] == [[BOS] * 3, *script[:, :-1].T.tolist()]
    with pytest.raises(ValueError, match="decoder_input"):
        network.train()(inputs)


def test_exact_match_and_token_accuracy_sum_exactly_over_batches():
    label = (torch.tensor([[4, 5, EOS, PAD], [6, EOS, PAD, PAD], [7, 8, 9, EOS]]), torch.tensor([3, 2, 4]))
    # right; wrong after <eos> (no <eos> at all); one wrong token. Decodes are one step longer than the targets.
    tokens = torch.tensor([[4, 5, EOS, PAD, PAD], [6, 7, 8, 9, 10], [7, 4, 9, EOS, PAD]])
    blobs = {"output": {"tokens": tokens}, "label": label}
    exact, accuracy = SequenceExactMatch(), TokenAccuracy()
    for meter in (exact, accuracy):
        meter.update(blobs)
    assert exact.compute() == pytest.approx(1 / 3) and accuracy.compute() == pytest.approx(7 / 9)
    halves = SequenceExactMatch()
    for rows in ([0], [1, 2]):
        halves.update({"output": {"tokens": tokens[rows]}, "label": (label[0][rows], label[1][rows])})
    assert torch.equal(halves.sums, exact.sums)
    with pytest.raises(ValueError, match="decoded tokens, label"):
        SequenceExactMatch("output.tokens")


# ---------------------------------------------------------------------------------------------- both routes


def env_for(tmp: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "PLAYGROUND_RUNS": str(tmp / "runs"), "GLOO_SOCKET_IFNAME": "lo"}


def start(folder: Path, env: dict, **sets) -> subprocess.Popen:
    args = [sys.executable, "-m", "playground", "run", "--parameters-json", str(EXAMPLE)]
    for key, value in {**TINY, "output.checkpoint_folder": str(folder), **sets}.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=180)
    return process.returncode, output


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model_final.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The opts route, one process, tiny: its run folder."""
    tmp = tmp_path_factory.mktemp("seq2seq")
    code, output = finish(start(tmp / "run", env_for(tmp)))
    assert code == 0, output
    return tmp / "run"


def test_opts_route_trains_and_writes_metrics_heatmap_and_statistics(reference):
    results = json.loads((reference / "results.json").read_text())
    losses = results["metrics"]["train_loss"]["values"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert {"test_loss", "test_exact_match", "test_token_accuracy"} <= results["final"].keys()
    assert results["metrics"]["test_loss"]["values"][-1] < results["metrics"]["test_loss"]["values"][0]
    assert (reference / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    statistics = json.loads((reference / "model_statistics.json").read_text())
    assert statistics["input_shape"]["decoder_input"] == [11] and statistics["flops_per_sample"] > 0
    assert {layer["name"]: layer["output_shape"] for layer in statistics["layers"]}["forward_gru"][1] == 64


def test_estimator_route_trains_the_same_batches_to_the_same_weights(reference, tmp_path):
    script = ROOT / "examples" / "fit_seq2seq.py"
    done = subprocess.run([sys.executable, str(script), "384", "100", "2"], cwd=tmp_path, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = Path(re.search(r"run folder (\S+)", done.stdout).group(1))
    results = json.loads((folder / "results.json").read_text())
    assert {"val_exact_match", "val_token_accuracy", "val_loss"} <= results["final"].keys()
    assert results["metrics"]["train_loss"]["values"][-1] < results["metrics"]["train_loss"]["values"][0]
    assert (folder / "attention.png").exists()
    same = weights(reference)
    assert all(torch.equal(value, same[name]) for name, value in weights(folder).items())


def test_two_processes_equal_one_with_exact_test_metrics(reference, tmp_path):
    folder = tmp_path / "run"
    code, output = finish(start(folder, env_for(tmp_path), **{"distributed.num_cpus": 2,
                                                              "epoch_iter.batch_per_device": 64}))
    assert code == 0 and "[rank 1]" in output, output
    two, one = weights(folder), weights(reference)
    assert max((two[k] - one[k]).abs().max().item() for k in one) <= 1e-5
    # The test metrics, reduced over two ranks of batches of other lengths (64 and 36 samples, each padded to its
    # own longest), equal one process's on the same final weights and the same batches.
    network = AttentionSeq2Seq(len(SOURCE), len(TARGET)).eval()
    network.load_state_dict(two)
    test, meters = DatesDataset("test", 100, seed=1), {"exact_match": SequenceExactMatch(),
                                                       "token_accuracy": TokenAccuracy()}
    for rows in (range(64), range(64, 100)):
        inputs, label = DatesDataset.collate([test[i] for i in rows])
        with torch.no_grad():
            blobs = {"output": network(inputs), "label": label}
        for meter in meters.values():
            meter.update(blobs)
    final = json.loads((folder / "results.json").read_text())["final"]
    assert {name: meter.compute() for name, meter in meters.items()} == {
        name: final[f"test_{name}"] for name in meters}


def build(folder: Path, **sets) -> AnyExp:
    """The example's experiment, tiny and without handlers or plots, built in this process as `playground run`
    builds it."""
    raw = json.loads(EXAMPLE.read_text())["opts"]
    quiet = {"output.handlers": [], "output.plots": [], "input.test_samples": 20, "epoch_iter.num_test_sample": 20}
    for key, value in {**TINY, **quiet, "output.checkpoint_folder": str(folder), **sets}.items():
        section, name = key.split(".")
        raw[section][name] = value
    opts, components = runner.prepare(raw)
    folder.mkdir(exist_ok=True)
    info = runner.run_info(opts, str(folder))
    runner.seed_everything(info.seed)
    return runner.experiment_class(components)(runner.build_parts(components, info), info)


def test_a_run_stopped_mid_epoch_resumes_exactly(tmp_path):
    whole = build(tmp_path / "whole")
    whole.run()
    first = build(tmp_path / "half")
    train_step = first.train_step

    def stop_in_step_4(batches):  # as a SIGTERM arriving during the 4th step would
        blobs = train_step(batches)
        if first.state.global_step == 3:  # steps done before this one
            first.request_stop(StopRequest("signal", "SIGTERM"))
        return blobs

    first.train_step = stop_in_step_4
    with pytest.raises(Stopped):
        first.run()
    assert (tmp_path / "half" / "model_checkpoint_epoch1_iter1.pt").exists()  # mid-epoch: 3 iterations each
    resumed = build(tmp_path / "half")
    runner.restore(resumed)
    assert (resumed.state.epoch, resumed.state.iteration) == (1, 1)
    resumed.run()
    assert all(torch.equal(a, b) for a, b in zip(whole.network.state_dict().values(),
                                                 resumed.network.state_dict().values()))
    assert whole.history["test"] == resumed.history["test"]


def test_dump_graph_exports_the_model_and_says_why_fx_cannot(tmp_path, caplog):
    exp = build(tmp_path, **{"model_param.max_decode_length": 2})
    with caplog.at_level(logging.INFO, logger="playground.handlers.dump_graph"):
        DumpGraph(["export", "fx"]).on_train_begin(exp)
    graph = (tmp_path / "graph_export.txt").read_text()
    assert graph.startswith("ExportedProgram") and graph.count("aten.gru_cell") == 11 + 2  # teacher-forced, greedy
    assert not (tmp_path / "graph_fx.txt").exists()
    assert "DumpGraph: no fx graph: TraceError: Proxy object cannot be iterated" in caplog.text


def test_heatmap_index_past_the_test_split_is_refused_before_training(tmp_path):
    exp = build(tmp_path)
    with pytest.raises(UsageError, match="AttentionHeatmap: index 20 is past the test split's 20 samples"):
        AttentionHeatmap(index=20).on_train_begin(exp)
    with pytest.raises(ValueError, match="index must be"):
        AttentionHeatmap(index=-1)


def test_the_heatmap_draws_its_sample_without_touching_the_runs_random_numbers(tmp_path):
    """A network that draws random numbers even in eval mode (as Monte Carlo dropout does) leaves the training
    run's generator where it was: a run trains the same with the handler as without."""
    def draw_a_random_number(module, inputs) -> None:
        torch.rand(1)

    exp = build(tmp_path)
    exp.network.register_forward_pre_hook(draw_a_random_number)
    state = torch.get_rng_state()
    AttentionHeatmap(index=3).on_test_end(exp)
    assert torch.equal(torch.get_rng_state(), state) and (tmp_path / "attention.png").exists()


def test_the_example_passes_the_opts_schema_it_names():
    from jsonschema import Draft202012Validator

    schema = json.loads((ROOT / "examples" / "playground.schema.json").read_text())
    assert json.loads(EXAMPLE.read_text())["$schema"] == "playground.schema.json"
    assert not [e.message for e in Draft202012Validator(schema).iter_errors(json.loads(EXAMPLE.read_text()))]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_fixed_batch_leaves_the_gpu_generator_where_it_was(tmp_path):
    from playground.testing import tiny_experiment
    from zoo.fixed_batch import fixed_test_batch

    exp = tiny_experiment(tmp_path, device=torch.device("cuda", 0))
    exp.network.register_forward_pre_hook(lambda module, inputs: torch.rand(1, device="cuda"))
    state = torch.cuda.get_rng_state(0)
    fixed_test_batch(exp, range(4))
    assert torch.equal(torch.cuda.get_rng_state(0), state)
