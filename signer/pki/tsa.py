"""An RFC 3161 time-stamping authority whose key lives in the HSM, and a pyHanko timestamper on it.

:class:`TimeStampAuthority` turns a DER TimeStampReq into a DER TimeStampResp (RFC 3161, ESS
signing-certificate-v2 per RFC 5816); the web tier serves it later, the hsm worker signs.
:class:`HsmTimeStamper` lets pyHanko obtain tokens in-process (B-T signatures, document timestamps)
without an HTTP round trip.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import ClassVar

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from hsm import Hsm, HsmError, Scheme, SignatureAlgorithm
from signer.pki.common import signature_hash, signing_key
from signer.pki.errors import InvalidInput, IssuerMismatch
from signer.pki.profiles import check_oid, tsa_policy_oid

log = logging.getLogger(__name__)

#: Digest algorithms accepted in a request's messageImprint, with their digest sizes.
ACCEPTED_HASHES = {"sha256": 32, "sha384": 48, "sha512": 64}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161 TimeStampResp. asn1crypto's ``tsp.TimeStampResp`` makes timeStampToken mandatory
    and so cannot encode or parse a rejection; this one has it optional, as the RFC says."""

    _fields: ClassVar[list[tuple[str, type, dict[str, bool]]]] = [
        ("status", tsp.PKIStatusInfo, {}),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _rejection(fail_info: str, text: str) -> bytes:
    status = tsp.PKIStatusInfo({"status": "rejection", "status_string": [text], "fail_info": {fail_info}})
    return bytes(TimeStampResp({"status": status}).dump())


class _Rejected(Exception):
    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text


def _accuracy(value: dt.timedelta) -> tsp.Accuracy:
    micros = round(value.total_seconds() * 1_000_000)
    if micros <= 0:
        raise InvalidInput("accuracy must be positive")
    seconds, rest = divmod(micros, 1_000_000)
    millis, micros = divmod(rest, 1000)
    # Zero components are left out (RFC 3161: a missing field means zero).
    fields = {k: v for k, v in (("seconds", seconds), ("millis", millis), ("micros", micros)) if v}
    return tsp.Accuracy(fields)


class TimeStampAuthority:
    """Answers RFC 3161 requests with tokens signed by the HSM key ``key_label``.

    ``cert`` is the TSA certificate (EKU id-kp-timeStamping, critical); ``chain`` the CA
    certificates sent along when the request sets certReq. ``policy_oid`` is the default TSA
    policy (:func:`~signer.pki.profiles.tsa_policy_oid` if ``None``); a request's reqPolicy must
    be it or one of ``accepted_policies`` (else unacceptedPolicy, as RFC 3161 2.4.2 demands).
    ``clock`` returns an aware datetime.
    """

    def __init__(self, hsm: Hsm, key_label: str, cert: x509.Certificate, chain: list[x509.Certificate],
                 policy_oid: str | None = None, clock: Callable[[], dt.datetime] = _utcnow, *,
                 accepted_policies: Iterable[str] = (),
                 accuracy: dt.timedelta = dt.timedelta(seconds=1)) -> None:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            raise IssuerMismatch("the TSA certificate has no extended key usage") from None
        if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
            raise IssuerMismatch("the TSA certificate needs exactly id-kp-timeStamping, critical")
        key = signing_key(hsm, key_label, cert)  # also proves the label names the certified key
        digest = signature_hash(key).name
        if isinstance(key, ec.EllipticCurvePrivateKey):
            self._algorithm = SignatureAlgorithm(Scheme.ECDSA, digest)
            self._sig_algo = algos.SignedDigestAlgorithm({"algorithm": f"{digest}_ecdsa"})
        else:
            self._algorithm = SignatureAlgorithm(Scheme.RSA_PKCS1V15, digest)
            self._sig_algo = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15", "parameters": None})
        self._hsm = hsm
        self._label = key_label
        self._cert = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
        self._chain = [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in chain]
        self.policy_oid = check_oid(policy_oid or tsa_policy_oid())
        self._policies = {self.policy_oid, *(check_oid(p) for p in accepted_policies)}
        self._clock = clock
        self._accuracy = _accuracy(accuracy)
        self._signing_certificate = tsp.SigningCertificateV2({"certs": [{
            # ESSCertIDv2 with the default hash (SHA-256), so hashAlgorithm is left out (RFC 5035).
            "cert_hash": hashlib.sha256(self._cert.dump()).digest(),
            "issuer_serial": {
                "issuer": [asn1_x509.GeneralName({"directory_name": self._cert.issuer})],
                "serial_number": self._cert.serial_number,
            },
        }]})

    @property
    def certificate(self) -> asn1_x509.Certificate:
        """The TSA certificate (asn1crypto form, as pyHanko wants it)."""
        return self._cert

    def respond(self, request_der: bytes) -> bytes:
        """A DER TimeStampResp for a DER TimeStampReq. Never raises: errors become rejections."""
        try:
            req = self._parse(request_der)
            return self._grant(req)
        except _Rejected as rejected:
            return _rejection(rejected.fail_info, rejected.text)
        except HsmError as exc:
            # The HSM message is generic (no PIN, no key material); the class says what failed.
            log.error("TSA signing with key %r failed: %s", self._label, type(exc).__name__)
            return _rejection("system_failure", "the time-stamping key is unavailable")
        except Exception:  # a network-facing endpoint answers in protocol, never with a traceback
            log.exception("TSA could not answer a request")
            return _rejection("system_failure", "internal error")

    def _parse(self, request_der: bytes) -> tsp.TimeStampReq:
        try:
            req = tsp.TimeStampReq.load(request_der, strict=True)
            req.native  # noqa: B018 - asn1crypto parses lazily: force every field now
        except Exception:  # asn1crypto raises ValueError, TypeError, OverflowError ... on junk
            raise _Rejected("bad_data_format", "the request is not a DER TimeStampReq") from None
        if req["version"].native != "v1":
            raise _Rejected("bad_request", "only TimeStampReq version 1 is supported")
        imprint = req["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        if algorithm not in ACCEPTED_HASHES or imprint["hash_algorithm"]["parameters"].native is not None:
            raise _Rejected("bad_alg", f"hash algorithm not accepted; use one of {sorted(ACCEPTED_HASHES)}")
        if len(imprint["hashed_message"].native) != ACCEPTED_HASHES[algorithm]:
            raise _Rejected("bad_data_format", "the hashed message length does not match the algorithm")
        policy = req["req_policy"].dotted if req["req_policy"].native is not None else None
        if policy is not None and policy not in self._policies:
            raise _Rejected("unaccepted_policy", "the requested policy is not offered by this TSA")
        if req["extensions"].native:
            raise _Rejected("unaccepted_extensions", "request extensions are not supported")
        return req

    def _grant(self, req: tsp.TimeStampReq) -> bytes:
        gen_time = self._clock()
        if gen_time.tzinfo is None:  # a misconfigured clock: refuse rather than guess the zone
            log.error("TSA clock returned a naive datetime")
            raise _Rejected("time_not_available", "the TSA clock is not available")
        tst_info = {
            "version": "v1",
            "policy": req["req_policy"].dotted if req["req_policy"].native is not None else self.policy_oid,
            "message_imprint": req["message_imprint"],
            # 128 random bits: unique without coordination between processes and hosts.
            "serial_number": 1 + secrets.randbits(128),
            "gen_time": gen_time.astimezone(dt.UTC),
            "accuracy": self._accuracy,
            "tsa": asn1_x509.GeneralName({"directory_name": self._cert.subject}),
        }
        if req["nonce"].native is not None:
            tst_info["nonce"] = req["nonce"]
        token = self._sign(tsp.TSTInfo(tst_info).dump(), bool(req["cert_req"].native))
        status = tsp.PKIStatusInfo({"status": "granted"})
        return bytes(tsp.TimeStampResp({"status": status, "time_stamp_token": token}).dump())

    def _sign(self, tst_info_der: bytes, cert_req: bool) -> cms.ContentInfo:
        digest = self._algorithm.hash
        signed_attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "message_digest",
                              "values": [hashlib.new(digest, tst_info_der).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [self._signing_certificate]}),
        ])
        # The signature covers the DER SET OF the attributes (RFC 5652 5.4), sorted by asn1crypto.
        signature = self._hsm.sign(self._label, signed_attrs.dump(), self._algorithm)
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
                "issuer": self._cert.issuer, "serial_number": self._cert.serial_number})}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": self._sig_algo,
            "signature": signature,
        })
        signed_data = {
            "version": "v3",  # v3: the encapsulated content is not id-data
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest})],
            "encap_content_info": {"content_type": "tst_info",
                                   "content": core.ParsableOctetString(tst_info_der)},
            "signer_infos": [signer_info],
        }
        if cert_req:
            signed_data["certificates"] = [self._cert, *self._chain]
        return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)})


class HsmTimeStamper(TimeStamper):  # type: ignore[misc]
    """A pyHanko :class:`TimeStamper` that asks a :class:`TimeStampAuthority` in-process.

    Used by the hsm worker for B-T signature timestamps and B-LTA document timestamps. The
    request is round-tripped through DER, so the token is exactly what the HTTP TSA would send.
    """

    def __init__(self, authority: TimeStampAuthority, include_nonce: bool = True) -> None:
        super().__init__(include_nonce=include_nonce)
        self._authority = authority

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        """Answer ``req`` with the local TSA (the HSM call is sub-millisecond: no executor)."""
        response = self._authority.respond(req.dump())
        status = TimeStampResp.load(response)["status"]
        if status["status"].native not in ("granted", "granted_with_mods"):
            # pyHanko would choke parsing a token-less response: report the refusal as it would.
            raise TimestampRequestError(
                f"the TSA refused the request: {'; '.join(status['status_string'].native or [])} "
                f"({', '.join(sorted(status['fail_info'].native or []))})")
        return tsp.TimeStampResp.load(response)


__all__ = ["ACCEPTED_HASHES", "HsmTimeStamper", "TimeStampAuthority", "TimeStampResp"]
