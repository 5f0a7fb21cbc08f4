"""Errors that mean "the user asked for something that cannot be done" (not a bug)."""

from __future__ import annotations


class UserError(Exception):
    """A user mistake (missing path, bad config, bad schema): reported as one line, exit code 2."""

    exit_code = 2
