"""Named errors. Only the CLI decides how a user sees them (DESIGN.md §10).

Exit codes: 0 success; 1 the thing checked failed; 2 usage or invalid input;
3 backend/network failure after retries; 70 (EX_SOFTWARE) an internal error, a bug: never retry it.
"""

from __future__ import annotations

INTERNAL_ERROR_EXIT = 70


class FlywheelError(Exception):
    """Base class: a one-line message naming the file/field/row, and an optional hint."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} (hint: {self.hint})"
        return " ".join(text.split())


class UsageError(FlywheelError):
    """Bad flags or arguments."""


class InputError(FlywheelError):
    """A file, row or field the user gave is invalid."""


class ConfigError(FlywheelError):
    """Settings are missing or contradictory."""


class CheckFailed(FlywheelError):
    """The thing being checked failed (gate policy, an eval task error)."""

    exit_code = 1


class BackendError(FlywheelError):
    """Braintrust, an LLM provider or the local store failed after retries."""

    exit_code = 3


class StoreBusy(BackendError):
    """Another process holds the local store's write lock."""
