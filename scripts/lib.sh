#!/usr/bin/env bash
# Shared helpers for the scripts in this folder. Source it; it defines
# functions and SIGNER_REPO, nothing else runs.
set -euo pipefail

# Repo root = parent of this file's folder, whatever the caller's cwd is.
# shellcheck disable=SC2034  # used by the scripts that source this file
SIGNER_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Progress goes to stderr so stdout stays clean for callers.
signer_log() { printf '[signer] %s\n' "$*" >&2; }
signer_die() { printf '[signer] ERROR: %s\n' "$*" >&2; exit 1; }

# Install only the Debian packages that are missing; `apt-get update` only
# when something is missing, so the second run touches no network.
_signer_apt_updated=0
signer_apt_ensure() {
    local pkg missing=()
    for pkg in "$@"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || return 0
    [[ $EUID -eq 0 ]] || signer_die "missing Debian packages: ${missing[*]} (run as root to install them)"
    signer_log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ((!_signer_apt_updated)); then
        apt-get update -qq
        _signer_apt_updated=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- private PostgreSQL cluster (tests only) ---------------------------------
# Binaries of the newest installed server, or of the version that created an
# existing data dir (a cluster must be run by its own major version).
signer_pg_bindir() {
    local pgdata=$1 ver
    if [[ -f "$pgdata/PG_VERSION" ]]; then
        ver=$(<"$pgdata/PG_VERSION")
        [[ -x "/usr/lib/postgresql/$ver/bin/pg_ctl" ]] && { echo "/usr/lib/postgresql/$ver/bin"; return; }
    fi
    # shellcheck disable=SC2012  # version-sort of a fixed Debian layout
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

# pg_ctl refuses to run as root, hence runuser; cd / avoids "could not
# change directory to /root" noise.
signer_pg_ctl() {
    local pgdata=$1; shift
    (cd / && runuser -u postgres -- "$(signer_pg_bindir "$pgdata")/pg_ctl" -D "$pgdata" "$@")
}

# Where the private test cluster lives when the postgres user cannot reach
# the state folder (e.g. a checkout under /root): one folder per checkout.
signer_pg_fallback_base() {
    echo "/var/tmp/signer-pg-$(printf '%s' "$SIGNER_REPO" | sha256sum | cut -c1-16)"
}

# Stop a private cluster if it is running (used by test teardown and
# `make clean-state`); silently does nothing otherwise.
signer_pg_stop() {
    local pgdata=$1
    [[ -f "$pgdata/postmaster.pid" ]] || return 0
    id postgres >/dev/null 2>&1 || return 0
    signer_pg_ctl "$pgdata" -m fast stop >/dev/null 2>&1 || true
}
