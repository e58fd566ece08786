# shellcheck shell=bash
# Test peer: real QEMU processes driven over their QMP sockets, without libvirt.
#
# The QMP backend's tests start qemu-system-x86_64 themselves (paused machines, and the tiny
# guest of tests/support/kvm_guest booted under TCG); QEMU and busybox-static come with kvm.sh,
# listed again here so this snippet stands on its own. Installs qemu.qmp, QEMU's own QMP client
# library, which the backend is built on.
#
# Sourced or executed as root by the project's setup script (with `set -euo pipefail`), after
# `apt-get update`. Idempotent: when everything is present it only runs a few queries.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

_hvb_qmp_setup() {
    local python="${PYTHON:-python3}"
    local pkgs=(
        qemu-system-x86  # qemu-system-x86_64 (TCG)
        busybox-static   # the tiny guest's userland
    )

    if [ "$(id -u)" -ne 0 ]; then
        echo "qmp.sh: not root; skipping the QEMU test peer setup" >&2
        return 0
    fi

    hvb_apt_install_missing qmp.sh "${pkgs[@]}"

    if ! "$python" -c 'import qemu.qmp' >/dev/null 2>&1; then
        echo "qmp.sh: installing qemu.qmp for $("$python" -c 'import sys; print(sys.executable)')"
        "$python" -m pip install 'qemu.qmp>=0.0.6'
    fi
}

_hvb_qmp_setup
unset -f _hvb_qmp_setup
