#!/usr/bin/env bash
# Set up everything the test suite needs, on a fresh Debian/Ubuntu machine or a developer's box.
#
#   As root: the Debian packages of the real test peers (QEMU + libvirt for a real KVM guest, Go +
#   govmomi for a vSphere simulator, …), from scripts/setup.d/*.sh, then the Python packages.
#   Not root: only the Python packages (real-peer tests then skip locally; in CI they must run).
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

# the core with its test, lint and docs tools, then each backend distribution that can install here
"$PYTHON" -m pip install -q --disable-pip-version-check -e '.[test,lint,docs]'
for backend in backends/*/; do
    if ! "$PYTHON" -m pip install -q --disable-pip-version-check -e "$backend"; then
        if [ "${CI:-}" = "true" ]; then
            echo "setup: installing $backend failed" >&2
            exit 1
        fi
        echo "setup: could not install $backend here (its hypervisor library needs system packages; run as root)" >&2
    fi
done
echo "setup: done"
