"""The model zoo's text classification: the generated sentiment language, the BiLSTM, TextCNN and bag-of-words
networks through `playground run` (examples/text_*.json) and Estimator.fit (examples/fit_text.py) at a tiny size,
and the statistics, graphs and saliency drawn for them."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, playground
from playground import Estimator
from playground.handlers import DumpGraph, ModelStatistics
from zoo.text.bag_of_words import BagOfWords
from zoo.text.bilstm import BiLSTM
from zoo.text.saliency_png import token_saliency
from zoo.text.sentiment_language import Clause, Sentence, Vocabulary, draw, sentence
from zoo.text.text_classifier_forward import NETWORKS
from zoo.text.text_input import Sentences, make

TINY = ["--set", "input.num_train_sentences=1024", "--set", "input.num_test_sentences=64", "--set",
        "epoch_iter.num_train_sample_per_epoch=1024", "--set", "epoch_iter.batch_per_device=32", "--set",
        "epoch_iter.num_epochs=2", "--set", "output.record_every_iters=1", "--set", "output.progress_bar=false"]


def falls(losses: list[float]) -> bool:
    """The mean of the last quarter is below that of the first: noisy per-batch losses fell."""
    quarter = max(len(losses) // 4, 1)
    return sum(losses[-quarter:]) / quarter < sum(losses[:quarter]) / quarter


# ---------------------------------------------------------------------------------------------- the language

def clause(adjective: str, intensifier: str = "", negator: str = "") -> Clause:
    return Clause("the movie", "was", adjective, intensifier, negator)


def test_negators_flip_the_sign_and_intensifiers_strengthen():
    assert [clause("bad").score, clause("bad", negator="not").score] == [-1, 1]          # "not bad"
    assert [clause("good").score, clause("good", negator="hardly").score] == [1, -1]     # "hardly good"
    assert [clause("good", "very").score, clause("terrible").score, clause("terrible", "truly").score] == [2, -2, -3]
    assert clause("good", "very", "not").score == -1 and clause("terrible", negator="never").score == 1
    assert clause("good", "very", "not").words == "the movie was not very good".split()


def test_but_and_although_take_the_second_clause_and_the_stronger_one_wins_and():
    good, bad, awful = clause("good"), clause("bad"), clause("awful")
    assert Sentence(good, "but", bad).label == 0 and Sentence(bad, "but", good).label == 1
    assert Sentence(good, "although", bad).label == 0 and Sentence(good, "although", bad).text == \
        "although the movie was good , the movie was bad"
    assert Sentence(good, "and", awful).label == 0 and Sentence(clause("good", "very"), "and", bad).label == 1


def test_word_order_decides_labels_a_bag_of_words_cannot_tell_apart():
    first = Sentence(clause("good", negator="not"), "but", clause("bad"), "honestly ,")
    second = Sentence(clause("good"), "but", clause("bad", negator="not"), "honestly ,")
    assert sorted(first.text.split()) == sorted(second.text.split()) and first.label != second.label
    vocabulary = Vocabulary()
    ids = [torch.tensor([vocabulary.encode(s.text)]) for s in (first, second)]
    lengths = torch.tensor([len(ids[0][0])])
    torch.manual_seed(0)
    bag, lstm = BagOfWords(len(vocabulary)).eval(), BiLSTM(len(vocabulary)).eval()
    assert torch.allclose(bag((ids[0], lengths)), bag((ids[1], lengths)))  # blind to order, by construction
    assert not torch.allclose(lstm((ids[0], lengths)), lstm((ids[1], lengths)))


def test_sentences_are_a_function_of_the_seed_and_index_and_use_only_known_words():
    assert [sentence(1, i) for i in range(50)] == [sentence(1, i) for i in range(50)]
    assert [sentence(1, i) for i in range(50)] != [sentence(2, i) for i in range(50)]
    vocabulary = Vocabulary()
    drawn = [draw(1, i) for i in range(3000)]
    assert all(1 not in vocabulary.encode(s.text) for s in drawn)  # no unknown word
    assert vocabulary.decode(vocabulary.encode(drawn[0].text)) == drawn[0].text
    assert {s.form for s in drawn} == {"one", "but", "although", "and"}
    assert 0.4 < sum(s.label for s in drawn) / len(drawn) < 0.6
    assert any(s.first.negator for s in drawn) and any(s.first.intensifier for s in drawn)
    flips = [s for s in drawn if s.form == "one" and not s.first.negator]
    assert all(Sentence(Clause(s.first.subject, s.first.verb, s.first.adjective, s.first.intensifier, "not")).label
               != s.label for s in flips)  # negating any generated clause flips its label


def test_collate_pads_with_zeros_and_keeps_the_lengths():
    data = Sentences(["the plot was good", "although the cast was bad , the movie was fine"], [1, 1], Vocabulary())
    (padded, lengths), labels = data.collate([data[0], data[1]])
    assert padded.shape == (2, 10) and lengths.tolist() == [4, 10] and labels.tolist() == [1, 1]
    assert padded[0, 4:].eq(0).all() and padded[1].ne(0).all()


# ---------------------------------------------------------------------------------------------- both routes

@pytest.mark.parametrize("example", ["text_bilstm", "text_textcnn", "text_bow"])
def test_the_opts_route_trains_each_network_and_writes_its_outputs(tmp_path, example):
    folder = tmp_path / "run"
    result = playground("run", "--parameters-json", str(ROOT / "examples" / f"{example}.json"), *TINY,
                        "--set", f"output.checkpoint_folder={folder}", timeout=300)
    assert result.returncode == 0, result.stderr
    results = json.loads((folder / "results.json").read_text())
    assert falls(results["metrics"]["train_loss"]["values"])
    assert {"test_accuracy", "test_macro_f1"} <= set(results["final"])
    assert (folder / "saliency.png").stat().st_size > 10_000 and (folder / "model_statistics.json").exists()


def test_the_estimator_route_trains_the_three_networks_on_the_same_data(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "fit_text.py"), "--epochs", "2", "--train",
                             "1024", "--test", "64", "--folder", str(tmp_path / "fit")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in NETWORKS:
        assert f"{name}: val_accuracy" in result.stdout
        results = json.loads((tmp_path / "fit" / name / "results.json").read_text())
        assert falls(results["metrics"]["train_loss"]["values"]) and "val_macro_f1" in results["final"]
        assert (tmp_path / "fit" / name / "saliency.png").exists()


# ---------------------------------------------------------------------------------------------- tools

@pytest.mark.parametrize("name", list(NETWORKS))
def test_model_statistics_and_dump_graph_work_on_the_text_networks_or_say_why_not(tmp_path, caplog, name):
    torch.manual_seed(0)
    net = NETWORKS[name](len(Vocabulary()), 2, 8)
    caplog.set_level(logging.INFO)
    Estimator(net, handlers=[ModelStatistics(), DumpGraph(formats=["export", "fx"])], progress_bar=False,
              device="cpu").fit(make(32), epochs=1, batch_size=16, checkpoint_folder=str(tmp_path / "run"))
    stats = json.loads((tmp_path / "run" / "model_statistics.json").read_text())
    length = len(make(1).ids[0])
    assert stats["input_shape"] == [[length], []] and stats["parameters"] == sum(p.numel() for p in net.parameters())
    assert stats["flops_per_sample"] > 0
    messages = [r.getMessage() for r in caplog.records]
    assert (tmp_path / "run" / "graph_fx.txt").exists()  # BiLSTM too: packing is one call in its graph
    if name == "bilstm":  # the LSTM's FLOPs and the packed batch's export: said in one line each
        assert stats["uncounted_layers"] == ["lstm (LSTM)"]
        assert "ModelStatistics: the FLOPs leave out lstm (LSTM) (torch.utils.flop_counter has no formula for " \
               "recurrent layers); their parameters are counted" in messages
        assert any(m.startswith("DumpGraph: no export graph: ") for m in messages)
    else:
        assert not stats["uncounted_layers"] and (tmp_path / "run" / "graph_export.txt").exists()


def test_saliency_is_zero_at_padding_one_at_each_sentences_peak_and_leaves_gradients_alone():
    data = make(6)
    (tokens, lengths), _ = data.collate([data[i] for i in range(6)])
    torch.manual_seed(0)
    net = BiLSTM(len(data.vocabulary)).train()
    saliency, predicted = token_saliency(net, (tokens, lengths))
    assert saliency.shape == tokens.shape and predicted.shape == (6,)
    assert torch.allclose(saliency.amax(dim=1), torch.ones(6))
    assert all(saliency[i, int(n):].eq(0).all() for i, n in enumerate(lengths))
    assert net.training and all(p.grad is None for p in net.parameters())
