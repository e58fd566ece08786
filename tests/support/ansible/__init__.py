"""The Ansible collection under test: a real ``ansible-playbook`` set-up, and modules run in-process.

:func:`playbook_setup` writes, in a tmp directory, what ``ansible-playbook`` needs to run the
collection of this checkout against localhost with the fake backend: every inventory host
stands for one VM of the seed scenario and runs locally with this very Python; the hosts share
one world persisted in SQLite (``fake://seed?state=…``), which the tests read back through
:func:`hvballoon.connect`. Ansible's own directories (home, local and remote temp) live in that
tmp directory too. :func:`run_module` runs one module's ``main()`` in this process instead: no
playbook, no fork, a few milliseconds.

``get_pip_shim.py`` beside this file stands in for pip's ``get-pip.py`` in ``ansible-test``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GET_PIP_SHIM", "PLAYBOOKS", "VMS", "Ansible", "playbook_setup", "recap", "run_module"]

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = ROOT / "tests" / "ansible" / "playbooks"
GET_PIP_SHIM = Path(__file__).with_name("get_pip_shim.py")
VMS = ("web01", "web02", "web03", "app01", "app02", "db01", "jvm01", "cache01", "batch01", "ci01")


@dataclass
class Ansible:
    """An ansible-playbook set-up in a tmp directory: config, inventory, worlds."""

    tmp: Path
    env: dict[str, str]
    kvm_uri: str
    esxi_uri: str

    def playbook(self, name: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        cmd = [shutil.which("ansible-playbook") or "ansible-playbook", str(PLAYBOOKS / name), *args]
        return subprocess.run(
            cmd, capture_output=True, text=True, env=self.env, timeout=timeout, cwd=self.tmp
        )


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP as {host: {ok, changed, failed, …}}.

    >>> recap("PLAY RECAP ***\\nweb01 : ok=2 changed=1 failed=0\\n")
    {'web01': {'ok': 2, 'changed': 1, 'failed': 0}}
    """
    out: dict[str, dict[str, int]] = {}
    for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", stdout.split("PLAY RECAP", 1)[-1], re.MULTILINE):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


def playbook_setup(tmp: Path) -> Ansible:
    """Config, inventory and two persisted worlds (kvm and esxi flavours) under ``tmp``."""
    kvm_uri = f"fake://seed?state={tmp / 'kvm.db'}"
    esxi_uri = f"fake://seed?flavor=esxi&state={tmp / 'esxi.db'}"
    # a managed host without hvballoon: a bare virtual environment of this Python
    nosdk = tmp / "nosdk"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(nosdk)], check=True, timeout=120)
    hosts = "\n".join(VMS)
    (tmp / "inventory.ini").write_text(
        f"[vms]\n{hosts}\n\n[nosdk_hosts]\nnosdk ansible_python_interpreter={nosdk / 'bin' / 'python'}\n\n"
        f"[all:vars]\nansible_connection=local\nansible_python_interpreter={sys.executable}\n",
        encoding="utf-8",
    )
    # a host's own variables (nosdk's interpreter) win over [all:vars]
    (tmp / "group_vars").mkdir()
    (tmp / "group_vars" / "all.yml").write_text(
        f"hv_uri: '{kvm_uri}'\nesxi_uri: '{esxi_uri}'\nhv_password: ''\n", encoding="utf-8"
    )
    (tmp / "ansible.cfg").write_text(
        "[defaults]\n"
        f"inventory = {tmp / 'inventory.ini'}\n"
        f"collections_path = {ROOT}\n"
        f"local_tmp = {tmp / 'local'}\n"
        f"remote_tmp = {tmp / 'remote'}\n"
        "forks = 8\n"
        "pipelining = true\n"
        "host_key_checking = false\n"
        "retry_files_enabled = false\n"
        "nocolor = true\n"
        "interpreter_python = auto_silent\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "HVBALLOON_PASSWORD"}
    env.update(
        ANSIBLE_CONFIG=str(tmp / "ansible.cfg"),
        ANSIBLE_HOME=str(tmp / "home"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PYTHONWARNINGS="ignore",
    )
    return Ansible(tmp=tmp, env=env, kvm_uri=kvm_uri, esxi_uri=esxi_uri)


def run_module(name: str, args: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """Run the collection's module ``name`` in this process; the JSON result it printed."""
    import importlib

    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes

    mod = importlib.import_module(f"ansible_collections.hvballoon.memory.plugins.modules.{name}")
    payload = {
        **args,
        "_ansible_check_mode": check_mode,
        "_ansible_remote_tmp": "/tmp",
        "_ansible_keep_remote_files": False,
    }
    basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    basic._ANSIBLE_PROFILE = "legacy"
    out = io.StringIO()
    try:
        with redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod.main()
    except SystemExit:
        pass
    finally:
        basic._ANSIBLE_ARGS = None
    text = out.getvalue()
    return json.loads(text[text.index("{") :])
