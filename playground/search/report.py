"""What a search found: its trials as a table, its best trial or Pareto front, and Optuna's plots of it.

    playground search report ID          the table, the best trial (one objective) or the Pareto front, the PNGs
    ExperimentRepository().search(ID)    the same table as a DataFrame, one row per trial

The PNGs go into the search's folder, `<runs root>/_searches/<id>/`: `history_<metric>.png` (optimisation
history) and `importances_<metric>.png` (parameter importances by Optuna's evaluator) per objective and, for two or
three objectives, `pareto.png`. Everything is read from the study, so a report can be made while the search
runs, from any host that reaches its storage.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any

FIRST_COLUMNS = ("trial", "state", "tag")


def objectives_of(study: Any) -> list[dict]:
    """The search's objectives ({metric, mode, reduce}), as its study records them."""
    return study.user_attrs.get("objectives") or [
        {"metric": f"objective_{i}", "mode": d.name.lower()[:3]} for i, d in enumerate(study.directions)]


def objective_columns(objectives: list[dict]) -> list[str]:
    """The column of each objective: its metric's name, with `:<reduce>` added where two objectives share one."""
    names = [o["metric"] for o in objectives]
    return [f"{o['metric']}:{o.get('reduce', 'last')}" if names.count(o["metric"]) > 1 else o["metric"]
            for o in objectives]


def front(study: Any) -> set[int]:
    """Numbers of the non-dominated complete trials; with one objective, the best trial's (none: empty)."""
    if len(study.directions) > 1:
        return {t.number for t in study.best_trials}
    try:
        return {study.best_trial.number}
    except ValueError:  # no complete trial yet
        return set()


def sampled_keys(study: Any, trials: list[Any]) -> list[str]:
    """Every sampled dotted key, in the space's order (a conditional key is sampled only where its condition held)."""
    keys: dict[str, None] = dict.fromkeys(study.user_attrs.get("space") or {})
    for trial in trials:
        keys.update(dict.fromkeys(trial.user_attrs.get("sampled") or {}))
    return list(keys)


def trials_frame(study: Any) -> Any:
    """A DataFrame, one row per trial: trial, state, tag, one column per sampled key (dotted name; missing where
    a condition left it out), one per objective, pareto (non-dominated; with one objective, the best trial) and
    wall_s (seconds from start to end; blank while running)."""
    import pandas as pd

    trials = study.get_trials(deepcopy=False)
    objectives = objective_columns(objectives_of(study))
    keys, best = sampled_keys(study, trials), front(study)
    rows = []
    for trial in trials:
        sampled = trial.user_attrs.get("sampled") or {}
        rows.append({"trial": trial.number, "state": trial.state.name, "tag": trial.user_attrs.get("tag", ""),
                     **{k: sampled.get(k) for k in keys},
                     **dict(zip(objectives, trial.values or [None] * len(objectives))),
                     "pareto": trial.number in best,
                     "wall_s": trial.duration.total_seconds() if trial.duration else None})
    columns = [*FIRST_COLUMNS, *keys, *objectives, "pareto", "wall_s"]
    return pd.DataFrame(rows, columns=columns).astype({"pareto": bool})


def search_frame(search_id: str, root: str | None = None) -> Any:
    """ExperimentRepository.search: the trials table of search `search_id` under runs root `root`."""
    from playground.search.study import load_study  # (its lab imports bring torch: not at import)

    return trials_frame(load_study(search_id, root))


def _short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its last part where that is unambiguous, so the printed table stays narrow."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: short if last.count(short) == 1 else k for k, short in zip(keys, last)}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table_text(frame: Any) -> str:
    """The trials table as text: short key names, `*` on the front, wall time in seconds."""
    if frame.empty:
        return "no trials yet"
    keys = [c for c in frame.columns if c not in (*FIRST_COLUMNS, "pareto", "wall_s")]
    names = {**_short_names(keys), "wall_s": "wall s"}
    shown = frame.drop(columns=["pareto"]).rename(columns=names)
    shown.insert(0, "", ["*" if p else "" for p in frame["pareto"]])
    return shown.to_string(index=False, na_rep="", formatters={c: _cell for c in shown.columns})


def best_text(study: Any, frame: Any) -> list[str]:
    """The best trial (one objective) or the Pareto front (several), each with its tag and sampled values."""
    objectives = objectives_of(study)
    columns = objective_columns(objectives)
    keys = _short_names([c for c in frame.columns if c not in (*FIRST_COLUMNS, *columns, "pareto", "wall_s")])
    chosen = frame[frame["pareto"]]
    if chosen.empty:
        return ["no complete trial yet"]
    if len(columns) == 1:
        heading = f"best trial (by {columns[0]}, {objectives[0]['mode']}):"
    else:
        heading = (f"Pareto front ({len(chosen)} trial(s), "
                   + ", ".join(f"{c} {o['mode']}" for c, o in zip(columns, objectives)) + "):")
    lines = [heading]
    for _, row in chosen.iterrows():
        values = "  ".join(f"{c}={_cell(row[c])}" for c in columns)
        sampled = " ".join(f"{short}={_cell(row[k])}" for k, short in keys.items() if _cell(row[k]))
        lines.append(f"  trial {row['trial']}: {values}  tag {row['tag'] or '-'}  {sampled}".rstrip())
    return lines


def write_plots(study: Any, folder: str) -> dict[str, str]:
    """Draw the PNGs into `folder`; returns {file name: its path, or why it was not drawn}."""
    import matplotlib  # imported here: only reports draw

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as plots

    names = objective_columns(objectives_of(study))
    drawings: dict[str, Any] = {}
    for i, name in enumerate(names):
        drawings.update(_objective_drawings(study, plots, i, name, study.directions[i].name.lower()[:3]))
    if len(names) in (2, 3):
        drawings["pareto.png"] = lambda: plots.plot_pareto_front(study, target_names=names)
    os.makedirs(folder, exist_ok=True)
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return dict.fromkeys(drawings, "not drawn: no complete trial yet")
    return {file: _draw(draw, os.path.join(folder, file)) for file, draw in drawings.items()}


def _objective_drawings(study: Any, plots: Any, i: int, name: str, mode: str) -> dict[str, Any]:
    """The history and the parameter importances of objective `i`. Optuna's evaluator (PED-ANOVA) ranks the
    parameters by how they lead to low values of its target, so a maximised objective is negated for it."""
    sign = -1.0 if mode == "max" else 1.0
    value = (lambda t: t.values[i]) if len(study.directions) > 1 else None
    return {
        f"history_{_slug(name)}.png": lambda: plots.plot_optimization_history(study, target=value, target_name=name),
        f"importances_{_slug(name)}.png": lambda: plots.plot_param_importances(
            study, target=lambda t: sign * t.values[i], target_name=f"{name} ({mode})"),
    }


def _draw(draw: Any, path: str) -> str:
    """Call `draw` (an Optuna plot: Axes, or an array of them) and save its figure at `path`; returns the path, or
    why it was not drawn."""
    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the matplotlib module is marked experimental; the negated target
            axes = draw()
    except (ValueError, RuntimeError) as e:  # e.g. importances of one trial, or of no parameter that varied
        return f"not drawn: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    figure.savefig(path + ".tmp.png", dpi=100)
    os.replace(path + ".tmp.png", path)
    plt.close(figure)
    return path


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def report_text(search_id: str, root: str | None = None, storage: str | None = None, ended_by: str = "") -> str:
    """Everything `playground search report` prints; draws the PNGs on the way."""
    import optuna

    from playground.search.study import load_study, search_folder

    study = load_study(search_id, root, storage)
    frame = trials_frame(study)
    folder = search_folder(search_id, root)
    counts = frame["state"].str.lower().value_counts()
    lines = [f"search {search_id}: {len(frame)} trial(s): "
             + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("complete", "pruned", "fail"))
             + f", {counts.get('running', 0)} running or interrupted"
             + (f"; {ended_by}" if ended_by else ""), table_text(frame)]
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        if error := trial.user_attrs.get("error"):
            lines.append(f"trial {trial.number} failed: {error}")
    lines += best_text(study, frame)
    written = write_plots(study, folder)
    lines.append(f"plots in {folder}:")
    lines += [f"  {file}: {where}" if where.startswith("not drawn") else f"  {file}" for file, where in written.items()]
    return "\n".join(lines)


def print_summary(search_id: str, root: str | None = None, ended_by: str = "") -> None:
    """The report `playground search` ends with (`ended_by`: why the search stopped asking for trials)."""
    print(report_text(search_id, root, ended_by=ended_by), flush=True)


def add_parser(search: Any) -> None:
    """`report` under `playground search`."""
    sub = search.add_subparsers(dest="search_command", parser_class=type(search), prog=search.prog,
                                title="optional sub-command", metavar="COMMAND")
    report = sub.add_parser("report", help="the trials table, the best trial or Pareto front, and the PNGs")
    report.add_argument("id", metavar="ID", help="the search's id, as `playground search` printed it")
    report.add_argument("--root", help="runs root: a folder (default: $PLAYGROUND_RUNS or ./runs)")
    report.add_argument("--storage", metavar="URL", help="the study's storage, when the search folder does not "
                        "name it (another host's search)")


def command(args: Any) -> int:
    """`playground search report ID`."""
    print(report_text(args.id, args.root, args.storage), flush=True)
    return 0
