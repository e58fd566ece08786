#!/usr/bin/env bash
# Set up everything the test suite needs, on a fresh Debian/Ubuntu machine or a developer's box.
#
#   As root: the Debian packages of the real test peers (QEMU + libvirt for a real KVM guest, Go +
#   govmomi for a vSphere simulator, …), from scripts/setup.d/*.sh, then the Python packages.
#   Not root: only the Python packages (real-peer tests then skip locally; in CI they must run).
#   Run it inside a virtual environment (the README's quick start): a fresh Debian refuses pip
#   into the system Python.
#
# Idempotent and quick on a machine that already has everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHON="${PYTHON:-python3}"

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    # refresh the package lists when they are missing or older than a day
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
        apt-get update -qq -o DPkg::Lock::Timeout=600
    fi
    for snippet in scripts/setup.d/*.sh; do
        # shellcheck disable=SC1090
        source "$snippet"
    done
fi

# hvballoon with its test, lint and docs tools and every backend's hypervisor library (the extras);
# libvirt-python (the kvm extra) builds against libvirt's headers, which only root installs here
pip=("$PYTHON" -m pip install -q --disable-pip-version-check)
if ! "${pip[@]}" -e '.[test,lint,docs,kvm,esxi,hyperv,qmp]'; then
    if [ "${CI:-}" = "true" ]; then
        echo "setup: installing hvballoon with every backend's library failed" >&2
        exit 1
    fi
    echo "setup: could not install the kvm extra here (libvirt-python builds against libvirt's headers:" \
        "run as root, or apt install libvirt-dev pkg-config gcc python3-dev); installing the others" >&2
    "${pip[@]}" -e '.[test,lint,docs,esxi,hyperv,qmp]'
fi
echo "setup: done"
