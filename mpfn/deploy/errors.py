"""Every error deploy raises derives from `DeployFailure` and carries one line of text."""

from __future__ import annotations


class DeployFailure(Exception):
    """Base of all deploy errors; the message is one line meant for the user."""
