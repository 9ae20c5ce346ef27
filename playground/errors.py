"""The errors playground reports to users. Each message is one line naming the key or file at fault and the fix."""


class PlaygroundError(Exception):
    """Base class: a problem reported as one line, without a traceback. `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(PlaygroundError):
    """Bad opts, bad command-line usage or a bad input file: the user must change what they asked for (exit 2)."""

    exit_code = 2


class OptsError(UsageError):
    """One or more problems in the opts; `problems` holds one line per problem, all found at once."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ComponentError(UsageError):
    """A `*_py` name that cannot be resolved, or a module that lacks what its role needs."""


class CheckpointError(PlaygroundError):
    """A checkpoint that cannot be written, or cannot be trusted when read."""


class DataError(PlaygroundError):
    """Input data that cannot be read or decoded (a damaged LMDB, too many undecodable records)."""
