#!/usr/bin/env bash
# Idempotent provisioning shared by run.sh and test.sh.
#   source scripts/setup.sh && signer_setup   # sets up, exports config, cd's to repo
#   scripts/setup.sh [CMD ARGS...]            # sets up, then execs CMD if given
# A second run installs nothing and regenerates nothing; it only re-exports.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIGNER_APT_PACKAGES=(
    python3 python3-venv python3-dev gcc   # venv + building any sdist wheels
    softhsm2 opensc                        # PKCS#11 token + pkcs11-tool for debugging
    redis-server                           # queue for the hsm/exchange workers
    poppler-utils fonts-liberation         # PDF rendering/inspection in tests
    fonts-liberation2                      # Liberation 2.x: the Vietnamese glyphs stamps need
    openssl ca-certificates curl procps
)

# PYTHON wins; else a python3.11 that can build venvs; else Debian's python3
# (3.11 on Debian 12, which matches python_requires).
signer_pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        echo "$PYTHON"
    elif command -v python3.11 >/dev/null 2>&1 && python3.11 -c 'import venv, ensurepip' 2>/dev/null; then
        command -v python3.11
    else
        echo /usr/bin/python3
    fi
}

signer_setup_venv() {
    local venv="$SIGNER_REPO/.venv" py stamp
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # A venv whose interpreter vanished (e.g. removed pyenv version) is rebuilt.
    if ! "$venv/bin/python" -c 'import pip' >/dev/null 2>&1; then
        py=$(signer_pick_python)
        signer_log "creating .venv with $py"
        rm -rf "$venv"
        "$py" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
    fi
    # Reinstall only when the dependency declarations change.
    stamp="$venv/.installed-$(cat "$SIGNER_REPO/setup.cfg" "$SIGNER_REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [[ ! -e "$stamp" ]]; then
        signer_log "pip install -e '.[test]'"
        (cd "$SIGNER_REPO" && "$venv/bin/python" -m pip install -q -e '.[test]')
        rm -f "$venv"/.installed-*
        touch "$stamp"
    fi
}

# _signer_secret NAME VAR FILE_VAR HEX_BYTES
# A value given in VAR is used as is. Otherwise the file (FILE_VAR, or
# $STATE/secrets/NAME) is created once with a random value and never
# printed; the app and init-token.sh read it through FILE_VAR.
_signer_secret() {
    local name=$1 var=$2 filevar=$3 bytes=$4 file
    [[ -z "${!var:-}" ]] || return 0
    file=${!filevar:-$SIGNER_STATE_DIR/secrets/$name}
    if [[ ! -e "$file" ]]; then
        # No trailing newline, so readers need not strip; tmp+mv so a crash
        # never leaves a half-written secret.
        (umask 077 && printf '%s' "$(openssl rand -hex "$bytes")" >"$file.tmp" && mv -f "$file.tmp" "$file")
        signer_log "generated secret $file"
    fi
    chmod 0600 "$file"
    export "$filevar=$file"
}

signer_setup_state() {
    SIGNER_STATE_DIR=${SIGNER_STATE_DIR:-$SIGNER_REPO/state}
    mkdir -p "$SIGNER_STATE_DIR"
    # Absolute, because it ends up in URLs and config files.
    SIGNER_STATE_DIR=$(cd "$SIGNER_STATE_DIR" && pwd)
    export SIGNER_STATE_DIR
    mkdir -p "$SIGNER_STATE_DIR"/{tokens,blobs,redis,log}
    install -d -m 0700 "$SIGNER_STATE_DIR/secrets"   # also tightens an existing dir

    _signer_secret hsm-user-pin SIGNER_HSM_PIN    SIGNER_HSM_PIN_FILE    16
    _signer_secret hsm-so-pin   SIGNER_HSM_SO_PIN SIGNER_HSM_SO_PIN_FILE 16
    _signer_secret secret-key   SIGNER_SECRET_KEY SIGNER_SECRET_KEY_FILE 32

    export DATABASE_URL=${DATABASE_URL:-sqlite:///$SIGNER_STATE_DIR/signer.db}
    export SIGNER_BLOB_DIR=${SIGNER_BLOB_DIR:-$SIGNER_STATE_DIR/blobs}
}

signer_setup_softhsm() {
    # Private config + token dir under state/: never the system /etc one.
    export SOFTHSM2_CONF=${SOFTHSM2_CONF:-$SIGNER_STATE_DIR/softhsm2.conf}
    export SIGNER_HSM_MODULE=${SIGNER_HSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
    export SIGNER_HSM_TOKEN=${SIGNER_HSM_TOKEN:-signer}
    "$SIGNER_REPO/softhsm/init-token.sh"
}

signer_setup() {
    cd "$SIGNER_REPO"
    signer_apt_ensure "${SIGNER_APT_PACKAGES[@]}"
    signer_setup_venv
    signer_setup_state
    signer_setup_softhsm
}

# Executed rather than sourced: provision, then optionally run a command
# with the exported environment (used by the Makefile's lint/bench).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    signer_setup
    if (($#)); then exec "$@"; fi
fi
