"""Certificate lifecycle: profiles as data, requests (issue, renew, re-key, revoke, suspend,
resume) with approval policies, and their execution by the hsm worker."""
