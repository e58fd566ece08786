"""The ``hvballoon`` command: the API from a shell, with tables for people and ``--json`` for
scripts. Exit codes follow the error's ``code`` (see ``hvballoon.errors``): 0 success, 2 bad
input, 3 backend missing, 4 connection, 5 timeout, 6 auth, 7 VM not found, 8 guard rail,
9 unsupported, 10 invalid state, 11 stalled, 12 partial change, 13 backend error; 130 when
interrupted (Ctrl-C), after saying what was done; and 141, quietly, when the output's reader
went away before it was all written (a broken pipe).

The package: :mod:`~hvballoon.cli.common` holds what the commands share (connection options,
``--json``, errors and exit codes, tables); one module per group of commands
(:mod:`~hvballoon.cli.targets`, :mod:`~hvballoon.cli.config`, :mod:`~hvballoon.cli.host`,
:mod:`~hvballoon.cli.fleet`, :mod:`~hvballoon.cli.autoballoon`, :mod:`~hvballoon.cli.release`,
:mod:`~hvballoon.cli.simulate`, :mod:`~hvballoon.cli.info`; the controller's sessions and journal,
which the last two share, in :mod:`~hvballoon.cli.controller_session`);
:mod:`~hvballoon.cli.app` assembles them into :func:`main`.
"""

from __future__ import annotations

from hvballoon.cli.app import main

__all__ = ["main"]
