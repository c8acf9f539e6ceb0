"""Errors a user can cause, and how they are worded.

Everything a user can get wrong (an unknown name, a missing file, a bad config key) raises a
:class:`UsageError` at the boundary where it is detected. The CLI prints its message as one line
and exits with status 2; library callers get an ordinary exception they can catch.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """A mistake in what the user asked for; the message says what is wrong and what to do."""

    exit_code = 2


class DataError(UsageError):
    """Missing, unreadable or malformed data."""


class TrainingError(Exception):
    """Training cannot go on (for example a non-finite loss); the last good checkpoint is kept."""

    exit_code = 1


def closest_first(name: str, choices: Iterable[str]) -> list[str]:
    """``choices`` ordered so that the ones closest to ``name`` come first."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=len(choices), cutoff=0.0)
    return close + [c for c in choices if c not in close]


def unknown(kind: str, name: str, choices: Iterable[str]) -> UsageError:
    """``unknown 'method' 'byl'; choose one of: byol, ...`` with the closest match first."""
    ordered = closest_first(name, choices)
    return UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(ordered)}")


class Interrupted(Exception):
    """Training was stopped by a signal after a checkpoint was written."""

    exit_code = 130
