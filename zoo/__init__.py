"""The model zoo: the Gluon Fit API's model list (issue #14), each task trained two ways on data generated
locally from a seed (no downloads): from opts (`playground run --parameters-json examples/<task>.json`) and from
Python (`examples/fit_<task>.py`, a few lines around `Estimator.fit` on the same network and data).

One subpackage per task; inside, one module per component, named for what it is (as in resnetdemo/):

    zoo/<task>/__init__.py     the task in a sentence, and BENCHMARK: {name: {"opts": "examples/<name>.json",
                               "metric": "test_...", "target": 0.95, "minutes": 10}} for benchmarks/zoo.py
                               (optional: "goal": "max"|"min", "relative_to": a metric of the same run that the
                               target is a fraction of, "report": more metrics to print)
    zoo/<task>/<data>.py       the generator: deterministic from a seed
    zoo/<task>/<data>_input.py the input slot (get_dataset; builds the data when missing)
    zoo/<task>/<net>.py        the network, a plain torch.nn.Module (what Estimator.fit is given)
    zoo/<task>/<net>_forward.py  the forward_pass slot (build_network from the opts)
    zoo/<task>/<task>_model.py   the model slot: Experiment(AnyExp), forward computing the losses (and, in eval
                               mode, decoding); tasks whose loss is one torch.nn loss of the network's output use
                               the built-in classification_model (model_param.loss) instead
    zoo/<task>/<what>_png.py   a handler drawing one fixed test batch as a PNG into the run folder
    zoo/fixed_batch.py         what those handlers share: the first test samples through the network, saving PNGs

module_map.py lists every component under its slot, a comment line per task.
"""
