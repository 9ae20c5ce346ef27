"""The `playground` command: run, make-lmdb. Logging is configured here, once; errors become one-line messages.

Exit codes: 0 done, 2 bad opts or usage, 1 failure while running, 143 stopped by SIGTERM after a checkpoint.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from playground.errors import PlaygroundError, UsageError

log = logging.getLogger("playground")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as UsageError (exit 2 through the one error path)."""

    def error(self, message: str) -> None:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="playground", description="Run deep-learning experiments from JSON opts.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="train and test an experiment described by opts")
    run.add_argument("--parameters-json", required=True, metavar="JSON_OR_FILE",
                     help='inline JSON or a .json file: {"opts": {...}} or the bare opts tree')
    run.add_argument("--set", action="append", default=[], metavar="DOTTED.KEY=VALUE",
                     help="override one opt; VALUE is parsed as JSON, else taken as a string (repeatable)")
    run.add_argument("--dry-run", action="store_true",
                     help="check the opts, resolve every component, print them, and exit without training")
    make_lmdb = commands.add_parser("make-lmdb", add_help=False, help="build an LMDB image dataset (see --help)")
    make_lmdb.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def load(args: argparse.Namespace) -> dict:
    from playground import opts

    tree = opts.load_opts(args.parameters_json)
    for assignment in args.set:
        opts.apply_set(tree, assignment)
    return tree


def command_run(args: argparse.Namespace) -> int:
    from playground import lab, runner

    opts, components = runner.prepare(load(args))
    if args.dry_run:
        print(runner.describe(opts, components))
        return 0
    folder = lab.open_run_folder(opts)
    with log_file(os.path.join(folder, "log.txt")):
        runner.run(opts, components, folder)
        log.info("done: results in %s", folder)
    return 0


def command_make_lmdb(args: argparse.Namespace) -> int:
    from resnetdemo import make_lmdb

    return make_lmdb.main(args.args)


@contextmanager
def log_file(path: str) -> Iterator[None]:
    """Copy every log record, and the traceback of a failure, into the run's log file."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    except Exception:
        if not isinstance(sys.exc_info()[1], PlaygroundError):
            handler.stream.write(traceback.format_exc())
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    logging.getLogger().setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # components in the current folder resolve, as under `python -m`
    try:
        args = build_parser().parse_args(argv)
        return {"run": command_run, "make-lmdb": command_make_lmdb}[args.command](args)
    except PlaygroundError as e:
        if e.exit_code == 0:
            log.info("%s", e)
        else:
            for line in str(e).splitlines():
                print(f"playground: error: {line}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("playground: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a failure while running: one line here, the traceback in the run's log file
        print(f"playground: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
