"""Threads, fork and token loss: the facts DESIGN.md section 3 warns about, tested for real."""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import threading
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

import hsm
import hsm.session
from tests.support import SoftHsm, in_threads


def test_four_threads_sign_2000_times_each_without_crashing(token: hsm.Hsm, rsa_key: hsm.KeyInfo) -> None:
    # Note: python-pkcs11 serialises sign() per session by itself, so this passes even without the
    # process lock; the mixed test below is the one that needs it.
    def work(n: int) -> list[bytes]:
        return [token.sign(rsa_key.label, f"{n}:{i}".encode(), hsm.RSA_SHA256) for i in range(2000)]

    results = in_threads(work, 4)
    assert sum(len(v) for v in results) == 8000
    public = load_der_public_key(rsa_key.public_key_der)
    assert isinstance(public, rsa.RSAPublicKey)
    for n, signatures in enumerate(results):
        for i in (0, 999, 1999):
            public.verify(signatures[i], f"{n}:{i}".encode(), padding.PKCS1v15(), hashes.SHA256())


def test_mixed_operations_from_many_threads_do_not_crash(softhsm: SoftHsm, hsm_config: hsm.HsmConfig) -> None:
    # Object searches and attribute reads have no per-session guard in python-pkcs11: with the
    # process lock disabled this workload kills the interpreter (segfault or glibc heap abort)
    # within a second, or hangs (20 of 20 runs). 8 threads x 500 operations, 2-3 s with the lock.
    # A token of its own: enumerations cost O(keys), and the shared token holds every key the
    # suite made before (at ~300 keys this took minutes instead of seconds).
    softhsm.create_token("test-mixed")
    token = hsm.Hsm(hsm.HsmConfig(hsm_config.module, "test-mixed", softhsm.pin))
    rsa_key = token.generate_key("mixed-rsa", hsm.KeySpec.parse("rsa-2048"))
    ec_key = token.generate_key("mixed-ec", hsm.KeySpec.parse("ec-p256"))
    threads, rounds = 8, 500
    digest = hsm.ECDSA_SHA256.digest(b"digest")
    start = threading.Barrier(threads)

    def work(n: int) -> list[bytes]:
        signatures = []
        start.wait(30)
        for i in range(rounds):
            step = (n + i) % 5
            if step == 0:
                signatures.append(token.sign(rsa_key.label, f"{n}:{i}".encode(), hsm.RSA_SHA256))
            elif step == 1:
                assert token.key_attributes(ec_key.label if i % 2 else rsa_key.label)["sensitive"]
            elif step == 2:
                assert rsa_key.label in token.list_keys()
            elif step == 3:
                assert token.status().key_count >= 2
            else:
                signatures.append(token.sign_digest(ec_key.label, digest, hsm.ECDSA_SHA256))
        return signatures

    results = in_threads(work, threads)
    assert sum(len(v) for v in results) == threads * rounds * 2 // 5
    ec_public = load_der_public_key(ec_key.public_key_der)
    assert isinstance(ec_public, ec.EllipticCurvePublicKey)
    for signatures in results:
        ecdsa = [sig for sig in signatures if sig[0] == 0x30 and len(sig) < 100]
        ec_public.verify(ecdsa[-1], b"digest", ec.ECDSA(hashes.SHA256()))


def _sign_in_child(config: hsm.HsmConfig, label: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        # Before any use: no sessions, and a module inherited through fork is due for a restart
        # (the at-fork hook; SoftHSM2 would happily keep using the copied state, a real HSM not).
        fresh = not hsm.session._sessions and (config.module in hsm.session._stale_libraries
                                               or config.module not in pkcs11._loaded)
        if not fresh:
            queue.put(("error", f"inherited state: sessions={list(hsm.session._sessions)}"))
            return
        queue.put(("ok", hsm.Hsm(config).sign(label, b"child", hsm.ECDSA_SHA256)))
    except BaseException as exc:
        queue.put(("error", repr(exc)))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_process_signs_after_parent_used_the_hsm(token: hsm.Hsm, ec_key: hsm.KeyInfo,
                                                      hsm_config: hsm.HsmConfig, method: str) -> None:
    token.sign(ec_key.label, b"parent first", hsm.ECDSA_SHA256)  # the parent holds a live session
    ctx: Any = multiprocessing.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=_sign_in_child, args=(hsm_config, ec_key.label, queue))
    proc.start()
    status, payload = queue.get(timeout=60)
    proc.join(30)
    assert proc.exitcode == 0
    assert status == "ok", payload
    public = load_der_public_key(ec_key.public_key_der)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(payload, b"child", ec.ECDSA(hashes.SHA256()))
    # ... and the parent's session still works after the child finalised its copy.
    token.sign(ec_key.label, b"parent after", hsm.ECDSA_SHA256)


def test_fork_while_another_thread_holds_the_process_lock(token: hsm.Hsm, ec_key: hsm.KeyInfo,
                                                         hsm_config: hsm.HsmConfig) -> None:
    # The child inherits the lock in its held state but not the thread that would release it:
    # without a fresh lock the child's first HSM call would wait forever.
    holding, release = threading.Event(), threading.Event()

    def hold(ts: Any) -> None:
        holding.set()
        release.wait(60)

    holder = threading.Thread(target=hsm.session.run, args=(hsm_config, hold))
    holder.start()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_sign_in_child, args=(hsm_config, ec_key.label, queue))
    try:
        assert holding.wait(30)
        proc.start()
        try:
            status, payload = queue.get(timeout=30)
        except queue_module.Empty:
            pytest.fail("the child hung on the lock it inherited from the parent")
    finally:
        release.set()
        holder.join(30)
        if proc.pid is not None:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    assert status == "ok", payload
    assert proc.exitcode == 0
    public = load_der_public_key(ec_key.public_key_der)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(payload, b"child", ec.ECDSA(hashes.SHA256()))
    token.sign(ec_key.label, b"parent after", hsm.ECDSA_SHA256)


def test_removed_token_is_unavailable_then_recovers(softhsm: SoftHsm, hsm_config: hsm.HsmConfig,
                                                    token: hsm.Hsm, ec_key: hsm.KeyInfo) -> None:
    softhsm.create_token("test-removable")
    removable = hsm.Hsm(hsm.HsmConfig(hsm_config.module, "test-removable", softhsm.pin))
    key = removable.generate_key("doomed", hsm.KeySpec.parse("ec-p256"))
    removable.sign(key.label, b"before", hsm.ECDSA_SHA256)

    softhsm.delete_token("test-removable")
    with pytest.raises(hsm.HsmUnavailable):
        removable.sign(key.label, b"after removal", hsm.ECDSA_SHA256)
    with pytest.raises(hsm.HsmUnavailable):
        removable.ping()
    with pytest.raises(hsm.HsmUnavailable):
        removable.status()
    # Another token in the same process is not disturbed by the module restart.
    token.sign(ec_key.label, b"other token", hsm.ECDSA_SHA256)

    # Re-initialised under the same label: the old key is gone, the token is usable again.
    softhsm.create_token("test-removable")
    removable.ping()
    assert removable.status().key_count == 0
    with pytest.raises(hsm.KeyNotFound):
        removable.sign(key.label, b"old key", hsm.ECDSA_SHA256)
    fresh = removable.generate_key("reborn", hsm.KeySpec.parse("ec-p256"))
    assert removable.sign(fresh.label, b"works", hsm.ECDSA_SHA256)

    # The heartbeat's ping notices a removal on its own, on a session that still looks fine, and
    # so does a look-up of a label that is not cached yet.
    softhsm.delete_token("test-removable")
    with pytest.raises(hsm.HsmUnavailable):
        removable.ping()
    softhsm.create_token("test-removable")
    removable.ping()
    softhsm.delete_token("test-removable")
    with pytest.raises(hsm.HsmUnavailable):
        removable.key_info("never-cached")


def test_missing_module_is_unavailable(hsm_config: hsm.HsmConfig) -> None:
    broken = hsm.Hsm(hsm.HsmConfig("/nonexistent/libpkcs11.so", "x", "1234"))
    with pytest.raises(hsm.HsmUnavailable):
        broken.status()


def test_unknown_token_label_is_unavailable(hsm_config: hsm.HsmConfig) -> None:
    with pytest.raises(hsm.HsmUnavailable):
        hsm.Hsm(hsm.HsmConfig(hsm_config.module, "no-such-token", "1234")).status()
