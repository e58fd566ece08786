# shellcheck shell=bash
# Helpers shared by the setup snippets in scripts/setup.d/ (sourced by each of them).

# hvb_apt_install_missing TAG PACKAGE... — install, without recommends, the Debian packages that
# are not installed yet; wait for another installer's dpkg lock rather than fail.
hvb_apt_install_missing() {
    local tag="$1" pkg status
    shift
    local missing=()
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        if [ "$status" != "installed" ]; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "$tag: installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            -o DPkg::Lock::Timeout=600 "${missing[@]}"
    fi
}
