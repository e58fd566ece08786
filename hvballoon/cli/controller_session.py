"""What ``hvballoon autoballoon`` and ``hvballoon release`` share: the sessions a controller
opens, and its journal."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from hvballoon.cli.common import read_password_stdin, seconds_option
from hvballoon.errors import InvalidRequestError

__all__ = ["check_journal_path", "open_journal", "session_factory"]


def session_factory(uri: str, opts: dict[str, Any]) -> Callable[[], Any]:
    """What opens the controller's sessions: the password is read once (stdin cannot be read
    twice) and kept as a secret for the sessions that replace a broken one."""
    from pydantic import SecretStr

    import hvballoon
    from hvballoon.backend import Backend

    password = SecretStr(read_password_stdin()) if opts.get("password_stdin") else None
    timeout = seconds_option(opts.get("timeout"), option="--timeout", default="30s")
    opened = 0

    def connect() -> Any:
        nonlocal opened
        # a session replacing a broken one is opened each round of an outage, which the
        # controller says (at its first round and each doubling): its retries at debug level
        retry = hvballoon.RetryPolicy(log_level=logging.DEBUG) if opened else None
        hv = hvballoon.connect(
            uri,
            password=password,
            timeout=timeout,
            verify=not opts.get("no_verify"),
            ca_file=opts.get("ca_file"),
            retry=retry,
        )
        opened += 1
        # retries wait on the hypervisor's clock (the simulator's, for the fake); on a clock of
        # its own their jitter is drawn from a fixed seed, as the simulator's runs draw it, so a
        # run on a simulated hypervisor is the same run every time (on a real one the jitter
        # spreads the retries of many controllers, and is left to chance)
        own_clock = type(hv.backend).sleep is not Backend.sleep
        seed = 0 if hv.retry.seed is None and own_clock else hv.retry.seed
        hv.retry = dataclasses.replace(hv.retry, sleep=hv.backend.sleep, log_level=logging.INFO, seed=seed)
        return hv

    return connect


def check_journal_path(path: str | None) -> None:
    """``--journal ''`` is a mistake, not a request for the default journal."""
    if path is not None and not path.strip():
        raise InvalidRequestError(
            "--journal: an empty path; name the journal's file (or leave the option out)"
        )


def open_journal(hv: Any, path: str | None, dry_run: bool) -> Any:
    """The controller's journal: none in a dry run (nothing is changed) and in memory for a
    hypervisor that ends with this process, else the file given or the URI's default."""
    from hvballoon.policy.journal import Journal, default_journal_path

    if dry_run or (path is None and hv.backend.ephemeral):
        return Journal.open(None, uri=hv.uri)
    return Journal.open(path or default_journal_path(hv.uri), uri=hv.uri)
