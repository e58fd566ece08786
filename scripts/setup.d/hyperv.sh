# shellcheck shell=bash
# Test peer: a loopback WinRM (WS-Management) server that the real pywinrm client talks to.
#
# The server itself (tests/support/winrm/) is standard-library Python; this installs the client
# side and what the server needs for NTLM and HTTPS: pywinrm (with requests-ntlm), pyspnego
# (its pure-Python NTLM acceptor) and cryptography (the test certificate, channel bindings).
# No system package and no service is needed.
#
# Sourced or executed as root by the project's setup script (with `set -euo pipefail`), after
# `apt-get update`. Idempotent: when everything imports it only runs one Python check.

_hvb_hyperv_setup() {
    local python="${PYTHON:-python3}"
    local reqs=("pywinrm>=0.5" "requests-ntlm>=1.2" "pyspnego>=0.10" "cryptography>=41")
    local pip_args=()

    if ! command -v "$python" >/dev/null 2>&1; then
        echo "hyperv.sh: $python not found; skipping the WinRM test peer setup" >&2
        return 0
    fi

    # Everything present, new enough, and importable: nothing to do.
    if "$python" - >/dev/null 2>&1 <<'PY'
import cryptography, requests_ntlm, spnego, winrm
from importlib.metadata import version
major, minor = (int(p) for p in version("pywinrm").split(".")[:2])
assert (major, minor) >= (0, 5)
PY
    then
        return 0
    fi

    if ! "$python" -m pip --version >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "hyperv.sh: installing python3-pip"
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                -o DPkg::Lock::Timeout=600 python3-pip
        fi
        if ! "$python" -m pip --version >/dev/null 2>&1; then
            echo "hyperv.sh: pip is not available for $python; skipping the WinRM test peer setup" >&2
            return 0
        fi
    fi

    # Debian's own python3 is "externally managed" (PEP 668): pip refuses to install into it
    # unless told to. A virtualenv or pyenv interpreter has no such marker.
    if "$python" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' 2>/dev/null \
        && [ -z "${VIRTUAL_ENV:-}" ]; then
        pip_args+=(--break-system-packages)
    fi

    echo "hyperv.sh: installing ${reqs[*]} for $("$python" -c 'import sys; print(sys.executable)')"
    if ! "$python" -m pip install --quiet --disable-pip-version-check "${pip_args[@]}" "${reqs[@]}"; then
        echo "hyperv.sh: pip install failed; the WinRM peer tests will report what is missing" >&2
        return 0
    fi
}

_hvb_hyperv_setup
unset -f _hvb_hyperv_setup
