"""A third-party backend for the fleet tests: the seed world, reached slowly or not at all.

``slowtest://NAME`` answers like ``fake://seed``; ``?sleep=S`` makes connecting take S seconds
(a host that hangs); ``?fail=CODE`` makes connecting fail with the hvballoon error of that code
(a host that is down, or refuses the credentials); ``?read_only=1`` adds a rule of its own to
the kind's: no configuration change (what a backend adds on top of a kind, on the typed plan).
Registered in-process with a ``registry.BackendSpec`` (``tests/cli/conftest.py``), in a
subprocess through the ``hvballoon.backends`` entry-point group of a tiny distribution written by
:func:`write_distribution`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from hvballoon._uri import parse_uri
from hvballoon.backend import ConnectOptions
from hvballoon.errors import PermissionDeniedError, error_codes
from hvballoon.fake.backend import FakeBackend
from hvballoon.models import VM, ConfigUpdate, MemoryConfig


class SlowBackend(FakeBackend):
    name: ClassVar[str] = "slowtest"
    schemes: ClassVar[tuple[str, ...]] = ("slowtest",)

    def __init__(self, opts: ConnectOptions) -> None:
        query = opts.uri.query
        if "sleep" in query:
            time.sleep(float(query["sleep"]))
        if "fail" in query:
            cls = error_codes()[query["fail"]]
            raise cls(f"simulated failure ({query['fail']}) of {opts.uri.redacted}", retryable=False)
        seed = ConnectOptions(
            parse_uri("fake://seed"),
            password=opts.password,
            timeout=opts.timeout,
            verify=opts.verify,
            ca_file=opts.ca_file,
            options=opts.options,
        )
        super().__init__(seed)
        self.read_only = query.get("read_only") == "1"

    def plan_config(self, vm: VM, update: ConfigUpdate, current: MemoryConfig) -> ConfigUpdate:
        """The kind's plan, then this backend's own rule on it: a read-only host changes nothing
        (a request that changes nothing is still answered, ``changed=False``)."""
        plan = super().plan_config(vm, update, current)
        if self.read_only and plan.changed():
            raise PermissionDeniedError(
                f"this slowtest host is read-only: {', '.join(plan.changed())} of {vm.name!r} not changed",
                backend=self.name,
                vm=vm.name,
                details={"rule": "read_only", "fields": list(plan.changed())},
            )
        return plan


def write_distribution(where: Path) -> Path:
    """A directory to put on PYTHONPATH: this module plus a dist-info declaring its entry point."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "hvbtest_slow.py").write_text(Path(__file__).read_text(encoding="utf-8"), encoding="utf-8")
    info = where / "hvbtest_slow-0.0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hvbtest-slow\nVersion: 0.0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[hvballoon.backends]\nslowtest = hvbtest_slow:SlowBackend\n", encoding="utf-8"
    )
    return where
