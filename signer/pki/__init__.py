"""A database-free PKI on HSM keys: certificate profiles, a built-in CA and an RFC 3161 TSA.

Everything here takes an :class:`hsm.Hsm` and key labels; private keys stay in the token. Nothing
touches the database: the certificate-lifecycle workflow stores what these functions return.

- :mod:`signer.pki.profiles`: certificate profiles as data (root, issuing CA, signing, TSA, OCSP).
- :mod:`signer.pki.builtin_ca`: root and issuing CAs, end-entity certificates, CRLs, OCSP responses.
- :mod:`signer.pki.tsa`: a time-stamping authority and a pyHanko timestamper that uses it in-process.
"""
