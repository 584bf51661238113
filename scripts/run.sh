#!/usr/bin/env bash
# Provision (idempotent), migrate/bootstrap, then hand over to the Python
# supervisor (gunicorn on 127.0.0.1:8000, workers, scheduler, private redis),
# which stops everything on Ctrl-C.
set -euo pipefail

# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
signer_setup

# signer_setup already ran softhsm/init-token.sh; `signer init` runs it again (documented as
# doing the token, for deployments without these scripts). It is idempotent: the second call
# finds the token by label and changes nothing.
.venv/bin/signer init
# Demo people, credentials, phones and an API key (idempotent): see README "Walk-through".
.venv/bin/signer demo > "$SIGNER_STATE_DIR/demo.json"
exec .venv/bin/signer run
