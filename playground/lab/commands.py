"""`playground runs list|show|diff|compare|push` and the `sweep` parser: tables of experiments for the shell.

cli.py adds these parsers and hands the parsed arguments to `main`; the work is done by the repository, and by
sweep.py for `sweep` (which never imports this module: the dependency goes one way).
"""
from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
from typing import Any

from playground.errors import UploadIncomplete, UsageError
from playground.lab.compare import compare, table
from playground.lab.repository import NOT_METRICS, Experiment, ExperimentRepository
from playground.lab.tags import is_url, runs_root, staging_root

log = logging.getLogger(__name__)


def add_parsers(commands: Any) -> None:
    """Add `runs` and `sweep` to the `playground` subcommands."""
    root_help = "runs root: a folder or s3://bucket/prefix (default: $PLAYGROUND_RUNS or ./runs)"
    runs = commands.add_parser("runs", help="list, show, diff and compare recorded experiments")
    sub = runs.add_subparsers(dest="runs_command", required=True, parser_class=type(runs))
    listing = sub.add_parser("list", help="a table of every experiment, oldest first")
    listing.add_argument("--search", metavar="ID", help="only the trials of search ID (playground search)")
    show = sub.add_parser("show", help="everything recorded about one experiment")
    show.add_argument("tag", help="a tag or a unique prefix of one")
    diff = sub.add_parser("diff", help="the opts and the code patches that differ between two experiments")
    diff.add_argument("tags", nargs=2, metavar="TAG")
    compare = sub.add_parser("compare", help="a table and a PNG plot of one metric across experiments")
    compare.add_argument("tags", nargs="+", metavar="TAG")
    compare.add_argument("--metric", required=True, help="a column of train.csv or test.csv, e.g. test_loss")
    compare.add_argument("--output", metavar="PNG", help="where the plot goes (default: compare_<metric>.png)")
    for parser in (listing, show, diff, compare):
        parser.add_argument("--root", help=root_help)
    push = sub.add_parser("push", help="upload the local copy of an experiment to its object store (after a run "
                          "whose last upload gave up)")
    push.add_argument("tag", help="a tag or a unique prefix of one, in the staging folder ($PLAYGROUND_STAGING)")

    sweep = commands.add_parser("sweep", help="run the cartesian product of opts values, each an experiment")
    sweep.add_argument("--parameters-json", "--opts", required=True, metavar="JSON_OR_FILE",
                       help="the base opts, as for `run`")
    sweep.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=VALUE",
                       help="override one base opt, as for `run` (repeatable)")
    sweep.add_argument("--grid", action="append", default=[], required=True, metavar="DOTTED.KEY=V1,V2",
                       help="values of one opt (each parsed as JSON, else a string; commas inside [...] or "
                            "{...} do not split); repeat for more keys")
    sweep.add_argument("--jobs", type=int, default=1, help="points run at once, in separate processes that "
                       "divide this machine's cores between them (default 1)")
    sweep.add_argument("--metric", help="metric of the closing table and plot (default: the first test metric)")


def main(args: argparse.Namespace) -> int:
    if args.command == "sweep":
        from playground.lab import sweep

        return sweep.command(args)
    if args.runs_command == "push":
        return runs_push(args.tag)
    repo = ExperimentRepository(args.root or runs_root())  # an unknown tag, artifact or metric: NotFound, exit 2
    return {"list": runs_list, "show": runs_show, "diff": runs_diff, "compare": runs_compare}[
        args.runs_command](repo, args)


def runs_list(repo: ExperimentRepository, args: argparse.Namespace) -> int:
    if args.search:
        frame = repo.summary(repo.search_trials(args.search))
        print(table(frame) if len(frame) else f"no experiments of search {args.search} in {repo.root}")
        return 0
    frame = repo.summary()
    print(table(frame) if len(frame) else f"no experiments in {repo.root}")
    return 0


def runs_show(repo: ExperimentRepository, args: argparse.Namespace) -> int:
    print(describe(repo[args.tag]))
    return 0


def describe(exp: Experiment) -> str:
    info = exp.info
    lines = [f"experiment {exp.tag}: {_status_line(exp, info)}", f"  location  {exp.location}"]
    if info.get("folder") and os.path.realpath(info["folder"]) != os.path.realpath(exp.location):
        lines.append(f"  folder    {info['folder']}")
    if sweep := info.get("sweep"):
        lines.append(f"  sweep     {sweep.get('id')} point {json.dumps(sweep.get('point'))}")
    for attempt in info.get("attempts", []):
        lines.append(f"  attempt {attempt['attempt']}: {attempt.get('started', '')[:19]} .. "
                     f"{(attempt.get('ended') or '')[:19]:19} {attempt.get('status', 'running'):11} "
                     f"pid {attempt.get('pid')} on {attempt.get('host')}"
                     + (f"; opts changed: {', '.join(attempt['opts_changed'])}" if attempt.get("opts_changed")
                        else ""))
    artifacts = exp.list_artifacts()
    if "source.json" in artifacts:
        lines.append(f"  source    {_source_line(exp['source.json'])}")
    if "environment.json" in artifacts:
        env = exp["environment.json"]
        devices = ", ".join(env.get("gpus") or []) or env.get("cpu")
        lines.append(f"  env       python {env.get('python')}, torch {env.get('torch')} (CUDA {env.get('cuda')}), "
                     f"numpy {env.get('numpy')} on {env.get('hostname')}: {devices}")
    if "opts.json" in artifacts:
        model = exp.opts.get("model", {})
        lines.append(f"  model     {model.get('model_name_py')} / {model.get('forward_pass_py')}")
    if final := {k: v for k, v in exp.final_metrics().items() if k not in NOT_METRICS}:
        lines.append("  final     " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in final.items()))
    lines.append("  artifacts " + " ".join(artifacts))
    return "\n".join(lines)


def _source_line(source: dict) -> str:
    if not source.get("git"):
        return source.get("note", "")
    line = f"{source.get('toplevel')} at {source.get('commit')} ({source.get('branch')})"
    if source.get("dirty"):
        line += ", with uncommitted changes (source.git-patch)"
    return line + f", {len(source.get('untracked', []))} untracked file(s)"


def _status_line(exp: Experiment, info: dict) -> str:
    current = exp.status
    if current == "failed":
        return f"failed: {info.get('error')}"
    if current == "killed":
        return f"killed (status.json says running, but pid {info.get('pid')} on {info.get('host')} is gone); " \
               f"`playground run --resume {exp.tag}` continues it"
    if current == "interrupted":
        return f"interrupted ({info.get('error')}); `playground run --resume {exp.tag}` continues it"
    return current


def runs_push(ref: str) -> int:
    """Upload the staging copy of an experiment to the store its status.json names, status.json last."""
    from playground.lab import status
    from playground.lab.run import mirror_deadline_s
    from playground.lab.store import Mirror

    tag = ExperimentRepository(staging_root()).resolve_tag(ref)
    folder = os.path.join(staging_root(), tag)
    store = (status.read(folder) or {}).get("store") or ""
    if not is_url(store):
        raise UsageError(f"runs push {ref}: experiment {tag} in {folder} belongs to {store or 'no store'}, not an "
                         "object store; only runs with a URL runs root are pushed")
    try:
        opts = status.read_json(os.path.join(folder, "opts.json"))
    except FileNotFoundError:
        opts = {}
    mirror = Mirror(folder, f"{store}/{tag}", deadline_s=mirror_deadline_s(opts))
    if unpushed := mirror.close():
        raise UploadIncomplete(folder, mirror.url, unpushed, mirror.deadline_s)
    print(f"pushed {len(mirror.uploaded)} file(s) of {tag} to {mirror.url}")
    return 0


def runs_diff(repo: ExperimentRepository, args: argparse.Namespace) -> int:
    a, b = (repo[t] for t in args.tags)
    differ = repo.diff(a.tag, b.tag)
    print(f"opts: {len(differ)} differ between {a.tag} and {b.tag}")
    width = max((len(k) for k in differ), default=0)
    for key, (left, right) in differ.items():
        print(f"  {key:{width}}  {json.dumps(left)}  ->  {json.dumps(right)}")
    sources = [exp["source.json"] if "source.json" in exp else {} for exp in (a, b)]
    if sources[0].get("commit") != sources[1].get("commit"):
        print(f"commit: {sources[0].get('commit')} -> {sources[1].get('commit')}")
    patches = [exp["source.git-patch"] if "source.git-patch" in exp else "" for exp in (a, b)]
    if patches[0] == patches[1]:
        print("code patch: identical" + ("" if patches[0] else " (none: clean working trees or not in git)"))
    else:
        print("code patch (a diff of the two `git diff HEAD` patches):")
        print("".join(difflib.unified_diff(patches[0].splitlines(True), patches[1].splitlines(True),
                                           f"{a.tag}/source.git-patch", f"{b.tag}/source.git-patch")))
    return 0


def runs_compare(repo: ExperimentRepository, args: argparse.Namespace) -> int:
    experiments = [repo[t] for t in args.tags]
    frame, png = compare(repo, experiments, args.metric, args.output or f"compare_{args.metric}.png")
    print(table(frame))
    print(f"plot: {png}")
    return 0
