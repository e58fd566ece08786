# shellcheck shell=bash
# Test peer: a vCenter/ESXi simulator built from Debian's govmomi source.
#
# Installs Go and govmomi's source (its `simulator` package; Debian ships no vcsim binary), so
# that tests/support/vsphere/harness.py can build tests/support/vsphere/vcsim/main.go in GOPATH
# mode; the openssl CLI, which the harness falls back to for the test certificate when the
# `cryptography` package is not importable; and pyvmomi, the client the tests and the ESXi
# backend use.
#
# Sourced or executed as root by the project's setup script (with `set -euo pipefail`), after
# `apt-get update`. Idempotent: when everything is present it only runs a few queries.

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

_hvb_esxi_setup() {
    local python="${PYTHON:-python3}"
    local pkgs=(
        golang-go                        # the Go toolchain (GOPATH builds)
        golang-github-vmware-govmomi-dev # govmomi source under /usr/share/gocode
        ca-certificates                  # Go's TLS stack and pip want the system roots
        openssl                          # test certificate when `cryptography` is absent
    )

    if [ "$(id -u)" -ne 0 ]; then
        echo "esxi.sh: not root; skipping the vSphere simulator test peer setup" >&2
        return 0
    fi

    hvb_apt_install_missing esxi.sh "${pkgs[@]}"

    if ! "$python" -c 'import pyVmomi' >/dev/null 2>&1; then
        echo "esxi.sh: installing pyvmomi for $("$python" -c 'import sys; print(sys.executable)')"
        "$python" -m pip install pyvmomi
    fi
}

_hvb_esxi_setup
unset -f _hvb_esxi_setup
