"""User-facing errors.

Anything the user can get wrong (a bad size, a missing file, an unknown name) raises
:class:`ArchlabError`. The CLI turns it into one line on stderr and exit code 2, never a traceback.
Library callers get an ordinary exception they can catch; ``ArchlabError`` subclasses ``ValueError``
so config validation (``ValueError`` naming the bad field) and user errors are caught the same way.
"""

from __future__ import annotations


class ArchlabError(ValueError):
    """A problem with the user's input; the message is one line that says what to do."""


__all__ = ["ArchlabError"]
