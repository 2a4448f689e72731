"""The small exception tree of reprun.

Library code raises these with the data a person needs (file, key, value, hint); only the CLI turns
them into a message and an exit code. Nothing below the CLI calls ``sys.exit``.
"""

from __future__ import annotations

from pathlib import Path

from runner.frozen import frozen


@frozen
class Problem:
    """One thing wrong with a file the user wrote: where it is, what is wrong, how to fix it."""

    file: Path | None
    key: str
    message: str
    line: int | None = None
    hint: str = ""

    def render(self, shown: str | None = None, origin: str = "") -> str:
        """One line; ``shown`` names the file instead of its path here (a file of a repository
        checked out for the run), ``origin`` is where that came from (its URL)."""
        where = ""
        if self.file is not None:
            where = shown or _display_path(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += f" (in {origin}): " if origin else ": "
        key = f"{self.key}: " if self.key else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{where}{key}{self.message}{hint}"


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class ReprunError(Exception):
    """Base of every error reprun reports to a person."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(ReprunError):
    """The command line itself is wrong (malformed ``-P``, unknown option value...)."""


class SpecError(ReprunError):
    """An MLproject or environment file is invalid. Carries every problem found."""

    def __init__(self, problems: list[Problem], check: str = "reprun validate") -> None:
        self.problems = problems
        first = problems[0].render()
        more = f" (and {len(problems) - 1} more problem(s): run '{check}')" if len(
            problems
        ) > 1 else ""
        super().__init__(first + more)

    def render(self) -> str:
        return self.message


class MissingExtraError(UsageError):
    """A feature whose libraries come with an extra of reprun that is not installed."""

    def __init__(self, extra: str, feature: str) -> None:
        super().__init__(f"{feature} need the {extra} extra: pip install 'reprun[{extra}]'")
        self.extra = extra
        self.feature = feature


class ParameterError(ReprunError):
    """A parameter value given with ``-P`` (or a default) does not fit its declaration."""

    def __init__(self, name: str, message: str, hint: str = "") -> None:
        super().__init__(f"parameter '{name}': {message}", hint)
        self.name = name


class ProjectNotFoundError(ReprunError):
    """The project URI names nothing that exists."""


class NotSupportedError(ReprunError):
    """A valid request that this version of reprun cannot carry out yet."""


class SourceError(ReprunError):
    """Fetching or checking out the project's source failed (network, credentials, git)."""


class RunNotFoundError(ReprunError):
    """No run in the store matches the id or prefix given."""


class EnvBuildError(ReprunError):
    """Building or finding the environment failed."""


@frozen
class Drift:
    """One entry of a recorded lock that this machine does not match."""

    entry: str
    recorded: str | None
    found: str | None
    reason: str | None = None  # why, when not a plain version difference

    def render(self) -> str:
        if self.reason is not None:
            return f"{self.entry} {self.recorded or ''}: {self.reason}".replace("  ", " ")
        if self.found is None:
            return f"{self.entry} {self.recorded} is locked but not installed"
        if self.recorded is None:
            return f"{self.entry} {self.found} is installed but not in the lock"
        return f"{self.entry} is {self.recorded} in the lock but {self.found} here"


class LockNotHonouredError(EnvBuildError):
    """A recorded lock cannot be rebuilt on this machine; ``drift`` says which entries and why."""

    def __init__(self, lock_file: str, drift: list[Drift]) -> None:
        shown = "; ".join(d.render() for d in drift[:5])
        more = f" (and {len(drift) - 5} more)" if len(drift) > 5 else ""
        super().__init__(
            f"the recorded lock {lock_file} cannot be honoured here: {shown}{more}",
            hint="install exactly the locked versions, or pass --allow-drift to run with what is "
                 "here and record the drift",
        )
        self.drift = tuple(drift)


class StoreError(ReprunError):
    """The run store cannot be written: a full disk, a read-only file system, no permission."""


class BackendError(ReprunError):
    """The execution backend could not start or follow the run."""


class StepError(ReprunError):
    """A pipeline's step cannot run: a step it reads from did not write what it reads."""


class TrackingError(ReprunError):
    """A tracking server could not be reached, or refused or failed a request."""

    def __init__(self, message: str, hint: str = "", status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.code = code


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived before the command started."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


USER_ERRORS: tuple[type[ReprunError], ...] = (
    UsageError,
    SpecError,
    ParameterError,
    ProjectNotFoundError,
    NotSupportedError,
    RunNotFoundError,
)
