#!/usr/bin/env bash
# Provision, make sure a PostgreSQL is reachable for the tests, then run
# ruff, mypy and pytest, stopping at the first failure. Arguments go to pytest.
# Tests start their own Redis and SoftHSM tokens, so nothing else is started.
set -euo pipefail

# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

SIGNER_PG_SHARED_URL=postgresql://postgres@127.0.0.1:5432/postgres
SIGNER_PG_PRIVATE_PORT=54329
SIGNER_PG_PRIVATE_URL=postgresql://postgres@127.0.0.1:$SIGNER_PG_PRIVATE_PORT/postgres

# -w: never prompt for a password; a server wanting one is just "not usable".
pg_select1() { PGCONNECT_TIMEOUT=5 psql -X -w -q -At "$1" -c 'select 1' >/dev/null 2>&1; }

# Private cluster owned by the postgres OS user, trust auth, loopback only.
# The data folder is reused (initdb once); a cluster this run starts is
# stopped again when the script exits.
pg_private_start() {
    local pgdata sock log base bindir
    signer_apt_ensure postgresql
    # The server runs as postgres, so it must be able to reach its dirs.
    if runuser -u postgres -- test -x "$SIGNER_STATE_DIR"; then
        pgdata=$SIGNER_STATE_DIR/pg sock=$SIGNER_STATE_DIR/pg-sock log=$SIGNER_STATE_DIR/log/pg.log
    else
        base=$(signer_pg_fallback_base)
        install -d -m 0755 "$base"
        pgdata=$base/data sock=$base/sock log=$base/pg.log
    fi
    install -d -o postgres -g postgres -m 0700 "$pgdata"
    install -d -o postgres -g postgres -m 0755 "$sock"
    touch "$log" && chown postgres:postgres "$log"
    bindir=$(signer_pg_bindir "$pgdata")
    [[ -n "$bindir" ]] || signer_die "no PostgreSQL server binaries under /usr/lib/postgresql"

    if [[ ! -f "$pgdata/PG_VERSION" ]]; then
        signer_log "initdb private PostgreSQL in $pgdata"
        (cd / && runuser -u postgres -- "$bindir/initdb" -D "$pgdata" -U postgres \
            --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-instructions) >>"$log" 2>&1 \
            || { tail -n 20 "$log" >&2; signer_die "initdb failed (log: $log)"; }
    fi
    if ! signer_pg_ctl "$pgdata" status >/dev/null 2>&1; then
        signer_log "starting private PostgreSQL on 127.0.0.1:$SIGNER_PG_PRIVATE_PORT"
        # We started it, so we stop it when the script ends, however it ends. A cluster that was
        # already running (another run, a developer's) is left alone.
        SIGNER_PG_STARTED=$pgdata
        trap 'signer_log "stopping private PostgreSQL"; signer_pg_stop "$SIGNER_PG_STARTED"' EXIT
        signer_pg_ctl "$pgdata" -w -t 60 -l "$log" \
            -o "-p $SIGNER_PG_PRIVATE_PORT -k '$sock' -c listen_addresses=127.0.0.1" start >/dev/null \
            || { tail -n 20 "$log" >&2; signer_die "private PostgreSQL did not start (log: $log)"; }
    fi
    pg_select1 "$SIGNER_PG_PRIVATE_URL" \
        || signer_die "private PostgreSQL in $pgdata is running but $SIGNER_PG_PRIVATE_URL does not answer"
}

# Caller's URL > shared server on 5432 with trust auth > private cluster.
# SIGNER_TEST_PG_FORCE_PRIVATE=1 skips the 5432 probe.
signer_test_postgres() {
    if [[ -n "${SIGNER_TEST_POSTGRES_URL:-}" ]]; then
        signer_log "tests use PostgreSQL from SIGNER_TEST_POSTGRES_URL"
        export SIGNER_TEST_POSTGRES_URL
        return
    fi
    if [[ "${SIGNER_TEST_PG_FORCE_PRIVATE:-0}" != 1 ]]; then
        command -v pg_isready >/dev/null 2>&1 || signer_apt_ensure postgresql-client
        if pg_isready -q -t 3 -h 127.0.0.1 -p 5432 && pg_select1 "$SIGNER_PG_SHARED_URL"; then
            signer_log "tests use PostgreSQL on 127.0.0.1:5432"
            export SIGNER_TEST_POSTGRES_URL=$SIGNER_PG_SHARED_URL
            return
        fi
    fi
    pg_private_start
    signer_log "tests use private PostgreSQL on 127.0.0.1:$SIGNER_PG_PRIVATE_PORT"
    export SIGNER_TEST_POSTGRES_URL=$SIGNER_PG_PRIVATE_URL
}

step() { printf '\n==> %s\n' "$*"; }

# Sourcing (e.g. to reuse signer_test_postgres) defines functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    signer_setup
    signer_apt_ensure chromium   # /usr/bin/chromium for the phone pages' browser tests (playwright drives it)
    signer_test_postgres

    step "ruff check"
    .venv/bin/ruff check .
    step "mypy"
    .venv/bin/mypy
    step "pytest $*"
    .venv/bin/pytest --durations=15 "$@"
    # Guards the acceptance ratio (hsm/ >= 0.9 of plain python-pkcs11 for RSA-2048) on every run;
    # one process, 5 rounds, and the check accepts the wall-clock or the CPU ratio, so CI noise
    # on 2 cores cannot masquerade as layer overhead (bench/README.md).
    step "bench hsm_sign --check (rsa-2048, 1 process)"
    .venv/bin/python -m bench hsm_sign --cases rsa-2048 --processes 1 --rounds 5 --duration 1 --check
fi
