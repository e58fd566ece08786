"""What every backend is built from: one error-rule table, one link, one options model.

A backend (a built-in one, or a third-party one arriving through the ``hvballoon.backends``
entry-point group) says only what is special about its hypervisor library; the rest is here,
written once:

- :class:`ErrorTable` of :class:`ErrorRule` rows maps the library's exceptions onto
  :mod:`hvballoon.errors` — the most specific row wins, whatever the order
  (:mod:`hvballoon.backend_kit.rules`);
- :class:`Link` (and :class:`AsyncLink`) calls the hypervisor with a deadline, maps its errors
  and reconnects once when the connection was lost (:mod:`hvballoon.backend_kit.link`);
- :class:`BackendOptions` and :class:`URIParameters` declare the keywords and URI parameters a
  backend accepts, validated strictly (:mod:`hvballoon.backend_kit.options`).

Importing it imports no hypervisor library.
"""

from hvballoon.backend_kit.link import AsyncLink, Deadline, DeadlineExceeded, Inline, Link, WorkerThread
from hvballoon.backend_kit.options import BackendOptions, URIParameters, expects
from hvballoon.backend_kit.rules import Code, ErrorRule, ErrorTable

__all__ = [
    "AsyncLink",
    "BackendOptions",
    "Code",
    "Deadline",
    "DeadlineExceeded",
    "ErrorRule",
    "ErrorTable",
    "Inline",
    "Link",
    "URIParameters",
    "WorkerThread",
    "expects",
]
