"""``hvballoon autoballoon --serve`` reading its settings again on SIGHUP, in this process: the
hypervisor may be away, and the new settings may not fit it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hvballoon import fake
from hvballoon.cli.autoballoon import _reload
from hvballoon.cli.autoballoon_settings import Overrides
from hvballoon.fake.world import World
from hvballoon.policy import Controller
from hvballoon.units import GiB
from tests.support.policies import seed_session


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Controller, Overrides, Path, World]]:
    """A controller of the seed world started from a settings file, after one round."""
    path = tmp_path / "settings.yaml"
    path.write_text("host_memory_bytes: 120GiB\n")
    overrides = Overrides(policy="mom")
    with fake.world("seed") as w, seed_session(w) as hv:
        ctl = Controller(hv, "mom", overrides.settings(str(path)))
        assert ctl.attempt().ok
        yield ctl, overrides, path, w


class TestASettingsReload:
    """SIGHUP's reload (``hvballoon autoballoon --serve``), in this process."""

    def test_while_the_hypervisor_is_away_it_is_made_and_checked_at_the_next_round(
        self, running: tuple[Controller, Overrides, Path, World], caplog: pytest.LogCaptureFixture
    ) -> None:
        ctl, overrides, path, w = running
        path.write_text("host_memory_bytes: 120GiB\nvms: {web1: {exclude: true}}\n")  # a typo
        w.faults.add(op="get_stats", kind="timeout", count=1000)
        with caplog.at_level("INFO", logger="hvballoon"):
            assert _reload(ctl, overrides, str(path))  # it does not raise: the service goes on
        assert "web1" in ctl.settings.vms
        events = [getattr(r, "event", None) for r in caplog.records]
        assert "reloaded" in events and "settings_unchecked" in events
        assert not ctl.attempt().ok
        w.faults.clear()
        with pytest.warns(UserWarning, match=r"'web1' that .* does not have \(did you mean 'web01'"):
            assert ctl.attempt().ok

    def test_what_the_new_settings_cannot_do_is_said_as_at_the_start(
        self, running: tuple[Controller, Overrides, Path, World], caplog: pytest.LogCaptureFixture
    ) -> None:
        ctl, overrides, path, _ = running
        path.write_text("host_memory_bytes: 120GiB\nvms: {web1: {floor: 4GiB}, web02: {floor: 64GiB}}\n")
        with caplog.at_level("INFO", logger="hvballoon"):
            assert _reload(ctl, overrides, str(path))
        unfit = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "settings_unfit"]
        assert len(unfit) == 2 and all(
            r.levelname == "WARNING" for r in caplog.records if "web1" in r.getMessage()
        )
        assert any("'web1'" in m for m in unfit) and any("above its maximum" in m for m in unfit)
        path.write_text("interval_seconds: -1\n")
        with caplog.at_level("INFO", logger="hvballoon"):
            assert not _reload(ctl, overrides, str(path))
        assert ctl.settings.vms["web02"].floor == 64 * GiB  # the settings in force are kept
