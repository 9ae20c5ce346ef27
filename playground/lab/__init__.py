"""The lab book: every run is an immutable experiment with a tag and a folder recording what ran and what came out.

    tags.py        tags (UTC minute + random suffix), the runs root, the staging folder for URL roots
    run.py         one attempt, from the launching process: folder, provenance, status.json, mirror
    provenance.py  opts.json, source.json + source.git-patch, environment.json
    status.py      status.json and the `killed` check (the recorded process is gone)
    recorder.py    the Recorder handler the runner adds to every experiment: train.csv, test.csv, TensorBoard
    store.py       local folder or fsspec URL; the background Mirror that uploads a run folder
    repository.py  ExperimentRepository / Experiment: reading experiments back (pandas)
    compare.py     one metric across experiments: a table and a plot
    commands.py    `playground runs list|show|diff|compare`
    sweep.py       `playground sweep`: a grid of experiments, resumable (a grid search of playground.search)
    launcher.py    experiments as child processes, a few at a time on their own cores: sweeps' and searches'

Importing this package is light: pandas, fsspec and tensorboard are imported only where they are used.
"""
from playground.lab.recorder import Recorder
from playground.lab.repository import Experiment, ExperimentRepository
from playground.lab.run import find_folder, log_file, open_run, resume_opts, run_folder
from playground.lab.tags import new_tag, runs_root

__all__ = ["Experiment", "ExperimentRepository", "Recorder", "find_folder", "new_tag",
           "log_file", "open_run", "resume_opts", "run_folder", "runs_root"]
