"""The remote signing service: HTTP API, workflows, workers and CLI."""

from signer import asn1compat

# Every process that builds or verifies a CMS imports this package first (web, workers, CLI, tests).
# The fix must be in place before the first signature: see signer/asn1compat.py.
asn1compat.install()
