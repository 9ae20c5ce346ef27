"""The `playground` command: run, runs, sweep, search, pipeline, and the commands plugins register (make-lmdb).
Logging is configured here, once; errors become one-line messages.

A package adds a command through the `playground.commands` entry-point group, e.g. in its pyproject.toml
`[project.entry-points."playground.commands"] make-lmdb = "resnetdemo.make_lmdb:main"`: `main(argv) -> int` gets
the arguments after the command's name and parses them itself (UsageParser reports its errors like ours). The
plugin is imported only when its command runs, so playground never imports the packages that extend it.

Exit codes: 0 done, 2 bad opts or usage, 1 failure while running, 143 stopped by SIGTERM after a checkpoint.
"""
from __future__ import annotations

import argparse
import functools
import importlib.metadata
import logging
import os
import signal
import sys

from playground.errors import PlaygroundError, UsageError

log = logging.getLogger("playground")
BUILT_IN_COMMANDS = ("run", "runs", "sweep", "search", "pipeline", "schema")


class UsageParser(argparse.ArgumentParser):
    """argparse that reports usage errors as UsageError (exit 2 through the one error path)."""

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def plugin_commands() -> dict[str, importlib.metadata.EntryPoint]:
    """The commands installed packages register in the `playground.commands` entry-point group, by name; a plugin
    cannot replace a built-in command."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group="playground.commands")
            if ep.name not in BUILT_IN_COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    from playground import __version__, slurm

    parser = UsageParser(prog="playground", description="Run deep-learning experiments from JSON opts.")
    parser.add_argument("--version", action="version", version=f"playground {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log DEBUG records too")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only (the run's log.txt "
                        "still gets every INFO record)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=UsageParser)
    run = commands.add_parser("run", help="train and test an experiment described by opts")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--parameters-json", "--opts", metavar="JSON_OR_FILE", help='inline JSON or a .json, .yaml '
                        'or .yml file: {"opts": {...}} or the bare opts tree; a top-level "base" merges files under it')
    source.add_argument("--resume", metavar="TAG", help="continue an unfinished experiment with the opts it was "
                        "started with: a tag, a unique prefix of one, or a run folder")
    run.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=VALUE",
                     help="override one opt; VALUE is parsed as JSON, else taken as a string (repeatable)")
    run.add_argument("--dry-run", action="store_true",
                     help="check the opts, resolve every component, print them, and exit without training")
    run.add_argument("--shard-id", type=int, default=None, metavar="I",
                     help="this host's index, 0 to distributed.num_shards - 1 (multi-host runs; not under torchrun)")
    slurm.add_arguments(run)
    schema = commands.add_parser("schema", help="print the JSON Schema of the opts, for editors")
    schema.add_argument("--parameters-json", "--opts", metavar="JSON_OR_FILE",
                        help="also cover the keys of the components this opts file names")
    from playground.lab import commands as lab_commands

    lab_commands.add_parsers(commands)  # runs, sweep
    slurm.add_arguments(commands.choices["sweep"])
    from playground.search import command as search_command

    search_command.add_parser(commands)
    from playground.search import pipeline

    pipeline.add_parser(commands)
    for name, plugin in plugin_commands().items():
        commands.add_parser(name, add_help=False, help=f"from {plugin.module} ({name} --help)")
    return parser


def command_schema(args: argparse.Namespace) -> int:
    """The opts' JSON Schema: the framework's keys, plus those of the components an opts file names."""
    from playground import opts, runner, schema

    declared = None
    if args.parameters_json:
        _, found, _ = runner.resolve_components(opts.with_defaults(opts.load_opts(args.parameters_json)))
        declared = runner.declared_opts(found)
    sys.stdout.write(schema.schema_text(declared))
    return 0


def load(args: argparse.Namespace) -> dict:
    from playground import opts

    if args.resume is not None:
        if not args.resume.strip():
            raise UsageError("--resume needs a tag, a unique prefix of one, or a run folder; got an empty value")
        from playground import lab

        tree = lab.resume_opts(args.resume)
    else:
        tree = opts.load_opts(args.parameters_json)
    for assignment in args.set:
        opts.apply_set(tree, assignment)
    return tree


def command_run(args: argparse.Namespace) -> int:
    from playground import lab, launch, runner

    opts, components = runner.prepare(load(args))
    if args.dry_run:
        print(runner.describe(opts, components))
        return 0
    if args.submit:
        from playground import slurm

        return slurm.command_run(args, opts)
    log.debug("the run, as --dry-run shows it:\n%s", runner.describe(opts, components))
    return launch.run(opts, components, args.shard_id, args.argv, functools.partial(lab.run_folder, resume=args.resume))


VERBOSITY = {"-v": logging.DEBUG, "--verbose": logging.DEBUG, "-q": logging.WARNING, "--quiet": logging.WARNING}


def configure_logging(argv: list[str]) -> list[str]:
    """Log to stderr at INFO, or at the level of the leading -v/-q flags; returns argv without them (so a plugin
    command also sees only its own arguments)."""
    level = logging.INFO
    while argv and argv[0] in VERBOSITY:
        level, argv = VERBOSITY[argv[0]], argv[1:]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    logging.getLogger().setLevel(level)
    return argv


def error_lines(error: PlaygroundError) -> list[str]:
    """The lines to show for `error`: one per problem, and for an error raised in a DataLoader worker (which
    PyTorch re-raises with the worker's traceback as its message) only the worker's own message."""
    text = str(error)
    if "Original Traceback" in text:
        return [text.strip().splitlines()[-1].split(": ", 1)[-1]]
    return text.splitlines()


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    argv = configure_logging(given)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # components in the current folder resolve, as under `python -m`
    try:
        if argv and (plugin := plugin_commands().get(argv[0])):  # its own parser, --help included
            return plugin.load()(argv[1:])
        args = build_parser().parse_args(argv)
        args.argv = list(given)  # the worker processes launch.run starts run the same command
        if args.command == "schema":
            return command_schema(args)
        if args.command in ("runs", "sweep"):
            from playground.lab import commands as lab_commands

            return lab_commands.main(args)
        if args.command == "search":
            from playground.search import command as search_command

            return search_command.command(args)
        if args.command == "pipeline":
            from playground.search import pipeline

            return pipeline.command(args)
        return command_run(args)
    except PlaygroundError as e:
        if e.exit_code == 0:
            log.info("%s", e)
        else:
            for line in error_lines(e):
                print(f"playground: error: {line}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C (the first asks the loop to checkpoint and stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a third must not cut the exit short
        print("playground: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a failure while running: one line here, the traceback in the run's log file
        print(f"playground: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
