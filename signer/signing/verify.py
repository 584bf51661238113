"""Verification of signed documents (``POST /v1/verify``): every signature in a PDF, or one
detached CMS over any file. No Flask and no HSM: pyHanko's validators, offline only.

Trust is a chain to one of the service's roots. Revocation is judged from what the document
carries first (its DSS and revocation data signed into the CMS), then from the service's own
CRLs; nothing is ever fetched from the network. The level reached by a signature:

- ``B-B``: intact and cryptographically valid;
- ``B-T``: plus a valid, trusted signature timestamp;
- ``B-LT``: plus revocation data for the signer's and the TSA's chains embedded in the document,
  enough to validate offline in hard-fail mode;
- ``B-LTA``: plus a valid, trusted document timestamp over a later revision.

Everything runs in one ``asyncio.run`` per document: call it from sync code only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asn1crypto import cms, core, pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import SuspiciousModification
from pyhanko.sign.general import find_unique_cms_attribute
from pyhanko.sign.validation import (
    async_validate_detached_cms,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko.sign.validation.dss import DocumentSecurityStore, NoDSSFoundError
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathError, RevokedError, ValidationError

from signer.signing.errors import InvalidDocument
from signer.signing.pades import open_pdf

log = logging.getLogger(__name__)
Report = dict[str, Any]
# Field names this service gives each Decree 30 profile (signer.signing.visible).
_PROFILE_FIELDS = {"ChuKyLanhDao": "approved", "ChuKyCoQuan": "issued", "ChuKyPhuLuc": "appendix",
                   "ChuKyBanSao": "copy"}


@dataclass(frozen=True)
class TrustSettings:
    """What the service trusts: its roots, and the newest CRLs of its own CAs (DER)."""

    roots: list[x509.Certificate]
    crls: list[bytes]


@dataclass
class Revinfo:
    """Revocation data a signature carries inside its CMS (asn1crypto CRLs and OCSP responses)."""

    crls: list[Any] = field(default_factory=list)
    ocsps: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, signed_data: cms.SignedData) -> Revinfo:
        """Adobe's signed revocation-info archival attribute, plus the SignedData ``crls`` field."""
        out = cls()
        try:
            archival = find_unique_cms_attribute(signed_data["signer_infos"][0]["signed_attrs"],
                                                 "adobe_revocation_info_archival")
            out.crls += list(archival["crl"] or [])
            out.ocsps += list(archival["ocsp"] or [])
        except (KeyError, ValueError):  # pyHanko's attribute errors are ValueErrors: none present
            pass
        for choice in signed_data["crls"] or []:
            if choice.name == "crl":
                out.crls.append(choice.chosen)
            elif choice.chosen["other_rev_info_format"].native == "ocsp_response":
                out.ocsps.append(choice.chosen["other_rev_info"])
        return out


@dataclass
class Sources:
    """Where revocation data can come from, for one signature: each call builds a fresh context
    (contexts cache validation results, so sources never mix)."""

    trust: TrustSettings
    dss: Any  # DocumentSecurityStore | None
    carried: Revinfo
    certs: list[x509.Certificate]

    @property
    def has_embedded(self) -> bool:
        dss_data = self.dss is not None and bool(self.dss.crls or self.dss.ocsps)
        return dss_data or bool(self.carried.crls or self.carried.ocsps)

    def context(self, mode: str, *, embedded: bool, service: bool,
                moment: datetime | None = None) -> ValidationContext:
        """Trust roots plus the chosen sources. With ``moment`` (a trusted signature timestamp),
        validation happens at that time and revocation data issued later counts: the LTV model,
        so embedded data stays usable after its CRLs' nextUpdate has passed."""
        kwargs: dict[str, Any] = {
            "trust_roots": self.trust.roots, "allow_fetching": False, "revocation_mode": mode,
            "other_certs": list(self.certs),
            "crls": (self.carried.crls if embedded else []) + (self.trust.crls if service else []),
            "ocsps": self.carried.ocsps if embedded else [],
        }
        if moment is not None:
            kwargs.update(moment=moment, retroactive_revinfo=True)
        if embedded and self.dss is not None:
            return self.dss.as_validation_context(kwargs)
        return ValidationContext(**kwargs)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _name_part(name: x509.Name, key: str) -> str | None:
    value = name.native.get(key)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return None if value is None else str(value)


def certificate_summary(cert: x509.Certificate) -> Report:
    """Who signed: subject name and organisation, serial, issuer, SHA-256 fingerprint."""
    return {"common_name": _name_part(cert.subject, "common_name"),
            "organisation": _name_part(cert.subject, "organization_name"),
            "serial": format(cert.serial_number, "x"),
            "issuer": _name_part(cert.issuer, "common_name"),
            "sha256": cert.sha256.hex()}


async def chain_status(context: ValidationContext, cert: x509.Certificate) -> str:
    """``good`` when ``cert`` chains to a root and every certificate's revocation status is
    known in ``context`` (hard-fail), ``revoked``, or ``unknown``."""
    try:
        await CertificateValidator(cert, validation_context=context).async_validate_path()
    except RevokedError:
        return "revoked"
    except (PathError, ValidationError, ValueError):
        return "unknown"
    return "good"


def _timestamp(status: Any) -> Report | None:
    ts = status.timestamp_validity
    if ts is None:
        return None
    return {"time": _iso(ts.timestamp), "valid": bool(ts.intact and ts.valid), "trusted": bool(ts.trusted),
            "tsa": _name_part(ts.signing_cert.subject, "common_name")}


def _ts_ok(status: Any) -> bool:
    ts = status.timestamp_validity
    return ts is not None and bool(ts.intact and ts.valid and ts.trusted)


def _trust(status: Any) -> Report:
    problem: str | None = None
    if not (status.intact and status.valid):
        problem = "not checked: the signature is not intact or not valid"
    elif status.revoked:
        problem = "a certificate in the chain is revoked"
    elif not status.trusted:
        indic = status.trust_problem_indic
        problem = indic.name.replace("_", " ").lower() if indic is not None else "no trusted chain"
    anchor = status.validation_path[0] if status.trusted else None
    return {"trusted": bool(status.trusted), "trust_problem": problem,
            "anchor": _name_part(anchor.subject, "common_name") if anchor is not None else None}


def _signature_time(status: Any) -> datetime | None:
    """The time of a valid, trusted signature timestamp: the proven time of signing."""
    return status.timestamp_validity.timestamp if _ts_ok(status) else None


async def _lt_ok(status: Any, sources: Sources, signer_embedded: str) -> bool:
    """The document's own data proves the signer's and the TSA's chains offline (hard-fail)."""
    moment = _signature_time(status)
    if signer_embedded != "good" or moment is None:
        return False
    tsa = status.timestamp_validity.signing_cert
    context = sources.context("hard-fail", embedded=True, service=False, moment=moment)
    return await chain_status(context, tsa) == "good"


async def revocation(status: Any, sources: Sources) -> tuple[Report, bool]:
    """The signer's revocation status and its source, and whether the B-LT condition holds.

    The document's own data comes first, judged at the signature timestamp's time when there is
    one; then the service's CRLs, judged now. A revocation found by the validation itself (now,
    every source) wins."""
    signer, embedded = status.signing_cert, "unknown"
    if sources.has_embedded:
        context = sources.context("hard-fail", embedded=True, service=False, moment=_signature_time(status))
        embedded = await chain_status(context, signer)
    if status.revoked or embedded == "revoked":
        details = status.revocation_details
        return {"status": "revoked", "source": "embedded" if embedded == "revoked" else "service",
                "revoked_at": _iso(details.revocation_date) if details else None}, False
    lt_ok = await _lt_ok(status, sources, embedded)
    if embedded == "good":
        return {"status": "good", "source": "embedded"}, lt_ok
    if status.trusted and sources.trust.crls and await chain_status(
            sources.context("hard-fail", embedded=False, service=True), signer) == "good":
        return {"status": "good", "source": "service"}, lt_ok
    return {"status": "unknown", "source": "none"}, lt_ok


def level(status: Any, lt_ok: bool, lta_ok: bool) -> str | None:
    """The highest baseline level reached; ``None`` when the signature itself is broken."""
    if not (status.intact and status.valid):
        return None
    if not _ts_ok(status):
        return "B-B"
    if not lt_ok:
        return "B-T"
    return "B-LTA" if lta_ok else "B-LT"


def profile_hint(field_name: str | None) -> str | None:
    """The Decree 30 profile this service's field naming suggests (a hint: names can be chosen)."""
    name = field_name or ""
    return next((profile for prefix, profile in _PROFILE_FIELDS.items() if name.startswith(prefix)), None)


def _modifications(status: Any) -> Report:
    mod, coverage, diff = status.modification_level, status.coverage, status.diff_result
    return {"level": mod.name.lower() if mod is not None else None,
            "coverage": coverage.name.lower() if coverage is not None else None,
            "docmdp_ok": status.docmdp_ok,
            "problem": str(diff) if isinstance(diff, SuspiciousModification) else None}


async def signature_report(status: Any, sources: Sources, *, field_name: str | None,
                           lta_ok: bool = False) -> Report:
    """One signature's entry in the report (PDF signature or detached CMS)."""
    rev, lt_ok = await revocation(status, sources)
    is_pdf = field_name is not None
    return {
        "field": field_name,
        "signer": certificate_summary(status.signing_cert),
        "signing_time": _iso(status.signer_reported_dt),
        "timestamp": _timestamp(status),
        "integrity": {"intact": bool(status.intact), "valid": bool(status.valid),
                      "digest_algorithm": status.md_algorithm,
                      "mechanism": status.pkcs7_signature_mechanism},
        "trust": _trust(status),
        "revocation": rev,
        "level": level(status, lt_ok, lta_ok),
        "modifications": _modifications(status) if is_pdf else None,
        "profile_hint": profile_hint(field_name),
        "ok": bool(status.bottom_line),
    }


def _broken(field_name: str, exc: Exception) -> Report:
    """A signature pyHanko cannot evaluate (unsupported or malformed): reported, never trusted."""
    log.info("signature %s cannot be validated: %s", field_name, type(exc).__name__)
    return {
        "field": field_name, "signer": None, "signing_time": None, "timestamp": None,
        "integrity": {"intact": False, "valid": False},
        "trust": {"trusted": False, "trust_problem": f"cannot be validated: {exc}"},
        "revocation": {"status": "unknown", "source": "none"},
        "level": None, "modifications": None, "profile_hint": None, "ok": False,
    }


def summary(signatures: list[Report], timestamps: list[Report] | None = None) -> Report:
    """``all_valid``: at least one signature, and every signature and document timestamp holds."""
    stamps_ok = all(t["intact"] and t["valid"] and t["trusted"] for t in timestamps or [])
    valid = sum(1 for s in signatures if s["ok"])
    return {"all_valid": bool(signatures) and valid == len(signatures) and stamps_ok,
            "signatures": len(signatures), "valid": valid}


# -- PDF -----------------------------------------------------------------------------------------


def _read_dss(reader: PdfFileReader) -> Any:
    try:
        return DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return None
    except Exception as exc:  # a damaged DSS: the document carries no usable revocation data
        raise InvalidDocument(f"the PDF's document security store cannot be read: {exc}") from None


async def _doc_timestamp(emb: Any, context: ValidationContext) -> tuple[int, Report]:
    try:
        status = await async_validate_pdf_timestamp(emb, context)
    except Exception as exc:  # as for signatures: this timestamp fails, the report goes on
        return emb.signed_revision, {"field": emb.field_name, "time": None, "intact": False,
                                     "valid": False, "trusted": False, "problem": str(exc)}
    return emb.signed_revision, {
        "field": emb.field_name, "time": _iso(status.timestamp), "intact": bool(status.intact),
        "valid": bool(status.valid), "trusted": bool(status.trusted),
        "tsa": _name_part(status.signing_cert.subject, "common_name"),
        "coverage": status.coverage.name.lower() if status.coverage is not None else None}


async def _pdf_signature(emb: Any, trust: TrustSettings, dss: Any,
                         stamps: list[tuple[int, Report]]) -> Report:
    carried = Revinfo.of(emb.signed_data)
    certs = [emb.signer_cert, *emb.other_embedded_certs]
    sources = Sources(trust, dss, carried, certs)
    # Soft-fail over everything known: trust and any revocation, wherever its data comes from.
    context = sources.context("soft-fail", embedded=True, service=True)
    try:
        status = await async_validate_pdf_signature(emb, context)
    except Exception as exc:  # hostile or damaged input: report this signature, keep the others
        return _broken(emb.field_name, exc)
    lta_ok = any(rev > emb.signed_revision and t["intact"] and t["valid"] and t["trusted"]
                 for rev, t in stamps)
    return await signature_report(status, sources, field_name=emb.field_name, lta_ok=lta_ok)


async def _verify_pdf(reader: PdfFileReader, embedded: list[Any], trust: TrustSettings) -> Report:
    dss = _read_dss(reader)
    stamp_context = Sources(trust, dss, Revinfo(), []).context("soft-fail", embedded=True, service=True)
    stamps = [await _doc_timestamp(e, stamp_context) for e in embedded
              if e.sig_object_type == "/DocTimeStamp"]
    signatures = [await _pdf_signature(e, trust, dss, stamps) for e in embedded
                  if e.sig_object_type == "/Sig"]
    timestamps = [t for _, t in stamps]
    return {"signatures": signatures, "timestamps": timestamps, "dss": dss is not None,
            "summary": summary(signatures, timestamps)}


def verify_pdf(data: bytes, trust: TrustSettings) -> Report:
    """The report for every signature of a PDF; :class:`InvalidDocument` when it is not a
    readable, unencrypted PDF."""
    reader = open_pdf(data)
    try:
        pages = int(reader.root["/Pages"]["/Count"])
        embedded = list(reader.embedded_signatures)
    except Exception as exc:  # pyHanko raises many types on damaged signature dictionaries
        raise InvalidDocument(f"the PDF's signatures cannot be read: {type(exc).__name__}") from None
    result = asyncio.run(_verify_pdf(reader, embedded, trust))
    return {
        "kind": "pdf",
        "signatures": result["signatures"],
        "document": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pages": pages,
                     "revisions": reader.xrefs.total_revisions, "dss": result["dss"],
                     "timestamps": result["timestamps"]},
        "summary": result["summary"],
    }


# -- detached CMS --------------------------------------------------------------------------------


def load_cms(signature: bytes) -> cms.SignedData:
    """A detached CMS SignedData with one signer, from DER or PEM; else :class:`InvalidDocument`."""
    try:
        der = pem.unarmor(signature)[2] if pem.detect(signature) else signature
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise InvalidDocument("the signature is a CMS object but not SignedData")
        signed = info["content"]
        if len(signed["signer_infos"]) != 1:
            raise InvalidDocument("the CMS must carry exactly one signer")
        if not isinstance(signed["encap_content_info"]["content"], core.Void):
            raise InvalidDocument("the CMS encapsulates its content; send a detached signature")
        return signed
    except InvalidDocument:
        raise
    except Exception as exc:  # asn1crypto raises ValueError, TypeError, KeyError on bad input
        raise InvalidDocument(f"the signature is not a valid CMS: {type(exc).__name__}") from None


async def _verify_cms(content: bytes, signed: cms.SignedData, trust: TrustSettings) -> Report:
    certs = [c.chosen for c in signed["certificates"] or [] if c.name == "certificate"]
    sources = Sources(trust, None, Revinfo.of(signed), certs)
    context = sources.context("soft-fail", embedded=True, service=True)
    status = await async_validate_detached_cms(content, signed, context)
    return await signature_report(status, sources, field_name=None)


def verify_cms(content: bytes, signature: bytes, trust: TrustSettings) -> Report:
    """The report for a detached CMS over ``content`` (any file)."""
    signed = load_cms(signature)
    try:
        entry = asyncio.run(_verify_cms(content, signed, trust))
    except (SignatureValidationError, ValueError, TypeError, KeyError) as exc:
        raise InvalidDocument(f"the CMS signature cannot be evaluated: {exc}") from None
    return {
        "kind": "cms",
        "signatures": [entry],
        "document": {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content), "pages": None},
        "summary": summary([entry]),
    }
