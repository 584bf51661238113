# Convenience aliases; the scripts do the work and run without make
# (make itself is not on a fresh Debian 12: use scripts/*.sh there).
SHELL := /bin/bash

.PHONY: run test lint bench clean-state

run:
	scripts/run.sh

# make test ARGS='-k foo -x'
test:
	scripts/test.sh $(ARGS)

lint:
	scripts/setup.sh bash -c '.venv/bin/ruff check . && .venv/bin/mypy'

bench:
	scripts/setup.sh .venv/bin/python -m bench

# Only ./state (DB, blobs, tokens, secrets). Stop the private test PostgreSQL
# first (in state/pg, or its /var/tmp fallback when postgres cannot reach
# state/), so it is not left running on deleted files.
clean-state:
	bash -c 'source scripts/lib.sh && signer_pg_stop "$$PWD/state/pg" && signer_pg_stop "$$(signer_pg_fallback_base)/data"'
	rm -rf state
