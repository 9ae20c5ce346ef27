"""Every error playground reports to users, with the exit code the command ends with and the outcome the lab
book records for the attempt. Each message is one line naming the key or file at fault and the fix.

    exit 0   AlreadyComplete      outcome complete     nothing to do: the experiment is finished and immutable
    exit 0   Pruned               outcome pruned       a search's pruner stopped the trial early, after a checkpoint
    exit 1   PlaygroundError      outcome failed       a failure while running (CheckpointError, DataError, ...)
    exit 2   UsageError           outcome failed       bad opts, usage or input file: change what was asked for
    exit 143 Stopped              outcome interrupted  a signal stopped the run after a checkpoint; re-run resumes
"""
from __future__ import annotations

COMPLETE, INTERRUPTED, FAILED, PRUNED = "complete", "interrupted", "failed", "pruned"


class PlaygroundError(Exception):
    """Base class: a problem reported as one line, without a traceback."""

    exit_code = 1
    outcome = FAILED


class UsageError(PlaygroundError):
    """Bad opts, bad command-line usage or a bad input file: the user must change what they asked for."""

    exit_code = 2


class OptsError(UsageError):
    """One or more problems in the opts; `problems` holds one line per problem, all found at once."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ComponentError(UsageError):
    """A `*_py` name that cannot be resolved, or a module that lacks what its slot needs."""


class EstimatorError(UsageError):
    """The Estimator's arguments or data do not fit together; found before the first training step."""


class NotFound(KeyError, UsageError):
    """No such experiment, artifact or column: a KeyError for notebooks, a usage error (exit 2) for the CLI.
    Other KeyErrors are bugs and stay tracebacks."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(PlaygroundError):
    """A checkpoint that cannot be written, or cannot be trusted when read."""


class DataError(PlaygroundError):
    """Input data that cannot be read or decoded (a damaged LMDB, too many undecodable records)."""


class HandlerError(PlaygroundError):
    """A handler raised: re-raised naming the handler, the event and where the run was."""


class NonFiniteLossError(PlaygroundError):
    """The loss became NaN or infinite; the run failed and no checkpoint was written after the last good one."""


class UploadIncomplete(PlaygroundError):
    """Files of an experiment that did not reach its store before the deadline; they stay in the local folder."""

    def __init__(self, folder: str, url: str, names: list[str], deadline_s: float):
        tag = url.rstrip("/").rsplit("/", 1)[-1]
        super().__init__(f"{len(names)} file(s) of experiment {tag} did not reach {url} within {deadline_s:g} s "
                         f"(output.mirror_deadline_s): {', '.join(names)}; they are safe in {folder}; "
                         f"`playground runs push {tag}` uploads them once the store answers")


class RankError(PlaygroundError):
    """An error raised on another rank, reported here with that rank's exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class RendezvousError(PlaygroundError):
    """The processes of a run could not meet: someone is missing, unreachable, or started with other opts."""


class OptsMismatch(RendezvousError, UsageError):
    """Processes of one run were started with different opts (exit 2, like any other opts problem)."""


class LostPeer(PlaygroundError):
    """A collective failed: another rank died or hung. Its own error says why; re-running resumes."""


class AlreadyComplete(PlaygroundError):
    """The experiment is complete, so it is immutable: nothing is run or written."""

    exit_code = 0
    outcome = COMPLETE


class Stopped(PlaygroundError):
    """A signal (SIGTERM, a first Ctrl-C) stopped the run, sweep or search; what trained is checkpointed, and
    re-running the same command resumes it."""

    exit_code = 143
    outcome = INTERRUPTED


class Pruned(PlaygroundError):
    """A search's pruner stopped the trial early, after a checkpoint: an expected end (exit 0), recorded `pruned`."""

    exit_code = 0
    outcome = PRUNED


class SearchFailed(PlaygroundError):
    """Trials of a search failed as often as search.budget.max_failures allows: a bug to show, not to hide."""


def outcome_of(error: BaseException | None) -> str:
    """The lab book's status for an attempt that ended with `error` (None: it finished)."""
    if error is None:
        return COMPLETE
    if isinstance(error, KeyboardInterrupt):
        return INTERRUPTED
    return getattr(error, "outcome", FAILED)
