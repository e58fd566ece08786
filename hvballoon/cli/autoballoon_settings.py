"""The settings of ``hvballoon autoballoon``: the ``--settings`` file (YAML or JSON), validated
into :class:`~hvballoon.policy.ControllerSettings`, with the command line's options on top (read
again on SIGHUP). The policy's own options (``--policy-option KEY=VALUE``, the file's
``policy_options:`` mapping; the command line wins per option) are checked against the policy
named by ``--policy`` here, before anything starts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hvballoon.errors import InvalidRequestError
from hvballoon.units import parse_typed_target

__all__ = [
    "Overrides",
    "load_settings_file",
    "option_key_note",
    "typed_size",
    "validate_settings",
    "vm_pairs",
]


def typed_size(value: object, what: str, *, allow_zero: bool = False) -> int:
    """A size option of the command line: a number without a unit below 1 MiB (``--host-memory
    128``) is a unit left out, refused rather than read as bytes."""
    return parse_typed_target(value, what=what, allow_zero=allow_zero, noun="size")


def vm_pairs(values: tuple[str, ...], what: str) -> dict[str, int]:
    """``--floor`` / ``--ceiling`` VM=SIZE pairs, by VM."""
    out = {}
    for item in values:
        name, sep, size = item.partition("=")
        if not sep or not name:
            raise InvalidRequestError(f"--{what} takes VM=SIZE (e.g. web01=4GiB), got {item!r}")
        if name in out:
            raise InvalidRequestError(f"--{what} names {name} twice; give each VM one {what}")
        out[name] = typed_size(size, what)
    return out


def load_settings_file(path: str | None) -> dict[str, Any]:
    """The mapping in a YAML or JSON settings file; a clear error for anything else."""
    if path is None:
        return {}
    where = Path(path)
    try:
        text = where.read_text("utf-8")
    except OSError as exc:
        raise InvalidRequestError(
            f"cannot read the settings file {path!r}: {exc.strerror or exc}", details={"settings": path}
        ) from None
    except UnicodeDecodeError:
        raise InvalidRequestError(
            f"{path}: the settings file is not UTF-8 text", details={"settings": path}
        ) from None
    from hvballoon._yamltext import load_json, load_yaml

    what = "JSON" if path.endswith(".json") else "YAML"
    if not text.strip():
        # a template that rendered nothing would run with no exclusions, floors or reserve
        raise InvalidRequestError(
            f"{path}: the settings file is empty; write {{}} for all the defaults",
            details={"settings": path},
        )
    try:
        # a key given twice is refused, not settled silently by the last one
        data = load_json(text) if what == "JSON" else load_yaml(text)
    except RecursionError:
        raise InvalidRequestError(
            f"{path}: not valid {what}: nested too deeply", details={"settings": path}
        ) from None
    except ValueError as exc:  # one line says what and where
        raise InvalidRequestError(f"{path}: not valid {what}: {exc}", details={"settings": path}) from None
    if data is None:  # comments only, or null: nothing was meant to be all the defaults
        raise InvalidRequestError(
            f"{path}: the settings file holds no settings (it is empty or null); write {{}} for all the defaults",
            details={"settings": path},
        )
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"{path}: the settings file must hold a mapping", details={"settings": path}
        )
    return data


#: The options of ``hvballoon autoballoon`` a person may write as keys of the settings file, by
#: the key (the option without its dashes): the file's key for it, or where it is instead.
_RENAMED = {
    "interval": "interval_seconds",
    "host_memory": "host_memory_bytes",
    "host_overhead": "host_overhead_bytes",
    "host_reserve": "host_reserve_bytes",
    "max_lower": "max_lower_bytes_per_round",
    "max_changes": "max_changes_per_round",
    "policy_option": "policy_options",
}
_VM_SETTINGS = {"exclude": "true", "self_managed": "true", "floor": "4GiB", "ceiling": "12GiB"}
_COMMAND_LINE_ONLY = [
    "dry_run",
    "once",
    "rounds",
    "serve",
    "settings",
    "check_settings",
    "check",
    "journal",
    "release_on_exit",
    "metrics_address",
    "log_format",
    "strict",
    "verbose",
    "json",
    "password_stdin",
    "ca_file",
    "no_verify",
    "timeout",
]


def option_key_note(key: str) -> str:
    """What a settings file's key written as one of the command line's options (``max_lower``,
    ``--floor``, ``floors``) says about where it goes; ``""`` for any other key."""
    name = key.strip().lstrip("-").replace("-", "_").lower()
    if name not in {*_RENAMED, *_VM_SETTINGS, *_COMMAND_LINE_ONLY, "policy", "session_margins"}:
        name = name.removesuffix("s")  # floors, ceilings, excludes
    if name in _RENAMED:
        return f" (did you mean {_RENAMED[name]!r}?)"
    if name in _VM_SETTINGS:
        return (
            f" ({name} is a setting of each VM: write it under vms, e.g. vms: {{web01: {{{name}: "
            f"{_VM_SETTINGS[name]}}}}}, or under default_vm for every VM)"
        )
    if name == "policy":
        return " (the policy is chosen by the command line's --policy; the file holds its options, policy_options)"
    if name == "session_margins":
        return " (--session-margins is policy_guard_rails: false in the file)"
    if name in _COMMAND_LINE_ONLY:
        return f" (--{name.replace('_', '-')} is an option of the command line, not a setting of the file)"
    return ""


def validate_settings(data: dict[str, Any], where: str = "autoballoon settings") -> Any:
    """``data`` as :class:`~hvballoon.policy.ControllerSettings`, or an error naming each problem."""
    from pydantic import ValidationError

    from hvballoon.policy import ControllerSettings

    try:
        return ControllerSettings.model_validate(data)
    except ValidationError as exc:
        from hvballoon._modelkeys import did_you_mean

        def note(loc: tuple[int | str, ...]) -> str:
            # a key written as the command line's option (max_lower for --max-lower, floor at the
            # top of the file) says where it goes; any other, the key it looks like
            return (len(loc) == 1 and option_key_note(str(loc[0]))) or did_you_mean(ControllerSettings, loc)

        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
            + str(e["msg"]).removeprefix("Value error, ")
            + (note(tuple(e["loc"])) if e["type"] == "extra_forbidden" else "")
            for e in exc.errors()
        )
        raise InvalidRequestError(f"invalid {where}: {problems}", details={"problems": problems}) from None


@dataclasses.dataclass(frozen=True)
class Overrides:
    """What the command line says on top of the settings file (applied again on SIGHUP)."""

    interval: float | None = None
    host_memory: int | None = None
    host_overhead: int | None = None
    host_reserve: int | None = None
    max_lower: int | None = None
    max_changes: int | None = None
    max_failed_rounds: int | None = None
    session_margins: bool = False
    vms: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    policy: str = "hvballoon"
    policy_options: dict[str, str] = dataclasses.field(default_factory=dict)

    def settings(self, settings_file: str | None) -> Any:
        """The settings in force: the file's, with the command line's on top; the policy's
        options checked against ``policy`` (an error names the option, nothing starts)."""
        from hvballoon.policy.base import get_policy

        data = load_settings_file(settings_file)
        for key, value in (
            ("interval_seconds", self.interval),
            ("host_memory_bytes", self.host_memory),
            ("host_overhead_bytes", self.host_overhead),
            ("host_reserve_bytes", self.host_reserve),
            ("max_lower_bytes_per_round", self.max_lower),
            ("max_changes_per_round", self.max_changes),
            ("max_failed_rounds", self.max_failed_rounds),
        ):
            if value is not None:
                data[key] = value
        if self.session_margins:
            data["policy_guard_rails"] = False
        vms = data.get("vms") or {}
        if isinstance(vms, dict):
            merged = {k: dict(v) if isinstance(v, dict) else v for k, v in vms.items()}
            for name, extra in self.vms.items():
                base = merged.get(name)
                merged[name] = {**(base if isinstance(base, dict) else {}), **extra}
            data["vms"] = merged
        if self.policy_options:
            in_file = data.get("policy_options")
            data["policy_options"] = {**(in_file if isinstance(in_file, dict) else {}), **self.policy_options}
        settings = validate_settings(
            data, f"autoballoon settings{f' in {settings_file}' if settings_file else ''}"
        )
        get_policy(self.policy, **settings.policy_options)  # its own checks too, before anything starts
        return settings
