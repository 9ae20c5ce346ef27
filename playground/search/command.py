"""`playground search --parameters-json FILE`: run or continue the search a file declares, or check it (--dry-run).

The first line printed names the search and its folder, as `playground run` names its experiment; the last lines
sum it up (report.print_summary).
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from playground.errors import UsageError


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add `search` to the `playground` subcommands."""
    search = commands.add_parser(
        "search", help="search over opts with Optuna: every trial a tagged experiment",
        usage="%(prog)s --parameters-json JSON_OR_FILE [--jobs JOBS] [--gpus-per-trial G] [--storage URL] [--dry-run]"
              "\n       %(prog)s report ID [--root ROOT] [--storage URL]")
    search.add_argument("--parameters-json", "--opts", metavar="JSON_OR_FILE",
                        help='{"opts": {...}, "search": {...}}: inline JSON or a .json, .yaml or .yml file')
    search.add_argument("--jobs", type=int, default=1, help="trials run at once, in separate processes that divide "
                        "this machine's cores between them (default 1)")
    search.add_argument("--gpus-per-trial", type=int, default=0, metavar="G",
                        help="GPUs each trial gets (CUDA_VISIBLE_DEVICES), G x jobs at most the GPUs visible")
    search.add_argument("--storage", metavar="URL", help="the study's storage, shared by every worker: "
                        "postgresql://..., sqlite:///path or a journal file path (default: search.storage, else "
                        "<runs root>/_searches/<id>/journal.log)")
    search.add_argument("--dry-run", action="store_true", help="check the search and a few points of its space "
                        "through the ordinary opts checks, print them, and exit without creating anything")
    from playground.search import report

    report.add_parser(search)  # `playground search report ID`
    return search


def command(args: argparse.Namespace) -> int:
    from playground.lab.tags import runs_root
    from playground.search.driver import Driver
    from playground.search.spec import load
    from playground.search.study import search_folder

    if args.search_command == "report":
        from playground.search import report

        return report.command(args)
    if not args.parameters_json:
        raise UsageError("playground search: give --parameters-json FILE holding {\"opts\": ..., \"search\": ...} "
                         "(see playground search --help)")
    spec = load(args.parameters_json, args.storage)
    root = runs_root(spec.base)
    print(f"search {spec.id}: {search_folder(spec.id, root)}", flush=True)
    driver = Driver(spec, root, args.jobs, args.gpus_per_trial)  # checks --jobs and GPUs, creating nothing
    if args.dry_run:
        print(describe(spec))
        return 0
    try:
        driver.run()
    finally:
        if driver.study is not None:
            from playground.search.report import print_summary

            print_summary(spec.id, root, driver.ended_by)
    return 0


def describe(spec: Any) -> str:
    """What --dry-run prints: the search as understood, and points of its space that pass the opts checks."""
    from playground.lab.launcher import describe_point
    from playground.search.spec import sample

    points = spec.points or sample(spec, 3)
    budget = f"{spec.trials} finished trial(s)" + (f", at most {spec.time_s:g} s" if spec.time_s else "") + \
        f", stop after {spec.max_failures} failure(s)"
    lines = ["dry run: nothing was created",
             "  objectives " + ", ".join(f"{o.metric} ({o.mode}, {o.reduce})" for o in spec.objectives),
             f"  algorithm  {json.dumps(spec.algorithm)}", f"  pruner     {json.dumps(spec.pruner)}",
             f"  budget     {budget}", f"  storage    {spec.storage or 'the journal file in the search folder'}",
             "  space"]
    lines += [f"    {key}: {json.dumps(entry)}" for key, entry in spec.space.items()]
    lines.append(f"{'every grid point' if spec.points else f'{len(points)} sampled point(s)'} passed the opts checks"
                 + (f" ({len(points)})" if spec.points else "") + ":")
    lines += [f"  {describe_point(p)}" for p in points[:10]] + (["  ..."] if len(points) > 10 else [])
    return "\n".join(lines)
