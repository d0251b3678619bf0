"""What every stage raises or reports when the input is bad: imported by all, importing nothing.

A :class:`UserError` is bad input (a device this machine lacks, an option that names nothing, a
manifest command without its manifest): the command line prints its message as one line and exits
with status 2. The other expected errors (``SpecError``, ``ZooError``, ``DataError``, ...) live
beside the code that raises them; the command line lists them all in one place
(``icc_bench.cli.main``).
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: printed as one line, exit status 2. A ``ValueError``, so that a library caller
    that catches bad arguments the usual way catches it too."""


def one_line(error: BaseException) -> str:
    """``"TypeName: first line of the message"``: how a failure is stored and reported in one line
    (a measure's error in the results store, a plugin that failed to load)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
