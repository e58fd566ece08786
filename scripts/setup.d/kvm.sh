# shellcheck shell=bash
# Test peer: a real tiny KVM/QEMU guest under libvirt's embedded QEMU driver.
#
# Installs QEMU (TCG is enough), libvirt's QEMU driver (no daemon is started: the tests open
# qemu:///embed?root=...), busybox-static for the guest's initramfs, and libvirt-python, which
# is built from source against libvirt-dev. The guest kernel itself is fetched later by
# tests/support/kvm_guest/build.py with `apt-get download`, not installed.
#
# Sourced or executed as root by the project's setup script (with `set -euo pipefail`), after
# `apt-get update`. Idempotent: when everything is present it only runs a few queries.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

_hvb_kvm_setup() {
    local python="${PYTHON:-python3}"
    local pkgs=(
        qemu-system-x86              # qemu-system-x86_64 (TCG)
        libvirt-daemon               # libvirt's driver modules
        libvirt-daemon-driver-qemu   # the QEMU driver used in-process by qemu:///embed
        busybox-static               # the guest's userland
        libvirt-dev                  # to build libvirt-python
        pkg-config
        gcc                          # to build libvirt-python
        libc6-dev
    )

    if [ "$(id -u)" -ne 0 ]; then
        echo "kvm.sh: not root; skipping the KVM guest test peer setup" >&2
        return 0
    fi

    hvb_apt_install_missing kvm.sh "${pkgs[@]}"

    # Running as root, the embedded QEMU driver still looks this user up.
    if ! getent passwd libvirt-qemu >/dev/null; then
        echo "kvm.sh: creating the libvirt-qemu system user"
        if getent group kvm >/dev/null; then
            useradd --system --no-create-home --home-dir /var/lib/libvirt \
                --shell /usr/sbin/nologin --gid kvm libvirt-qemu
        else
            useradd --system --no-create-home --home-dir /var/lib/libvirt \
                --shell /usr/sbin/nologin --user-group libvirt-qemu
        fi
    fi

    if ! "$python" -c 'import libvirt' >/dev/null 2>&1; then
        # Debian's own python3 refuses pip installs outside a venv (PEP 668): use its package.
        if "$python" -c 'import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)' 2>/dev/null; then
            echo "kvm.sh: installing python3-libvirt for the system python"
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                -o DPkg::Lock::Timeout=600 python3-libvirt
        else
            echo "kvm.sh: installing libvirt-python for $("$python" -c 'import sys; print(sys.executable)')"
            "$python" -m pip install libvirt-python
        fi
    fi
}

_hvb_kvm_setup
unset -f _hvb_kvm_setup
