// The phone app's only script: WebAuthn (sign in, approve), refusing, countdowns, live updates.
// It recomputes the approval challenge from what the page shows; the server's copy is only compared.
"use strict";
const b64url = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const unb64url = (s) => { s = s.replace(/-/g, "+").replace(/_/g, "/"); s += "=".repeat((4 - s.length % 4) % 4); return Uint8Array.from(atob(s), (c) => c.charCodeAt(0)).buffer; };
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (h) => new Uint8Array(h.match(/../g).map((x) => parseInt(x, 16))).buffer;
const postJSON = (url, body) => fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, credentials: "same-origin", body: JSON.stringify(body)});

function assertionJSON(cred) {
  const r = cred.response;
  return {id: cred.id, rawId: b64url(cred.rawId), type: cred.type, authenticatorAttachment: cred.authenticatorAttachment,
    response: {clientDataJSON: b64url(r.clientDataJSON), authenticatorData: b64url(r.authenticatorData),
      signature: b64url(r.signature), userHandle: r.userHandle ? b64url(r.userHandle) : null},
    clientExtensionResults: cred.getClientExtensionResults()};
}

// signer.signing.challenge.encode: sorted keys, no spaces, lower-case hashes.
async function challengeOf(a) {
  const body = JSON.stringify({credential: a.credential, dtbsr: a.dtbsr.map((h) => h.toLowerCase()), expires: a.expires, request: a.request, v: a.version});
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(body));
}

async function login(button) {
  const error = document.querySelector("[data-error]");
  error.hidden = true;
  try {
    const options = await (await postJSON("/v1/session/passkey/options", {})).json();
    const cred = await navigator.credentials.get({publicKey: {challenge: unb64url(options.challenge), rpId: options.rpId,
      timeout: options.timeout, userVerification: "required", allowCredentials: []}});
    const done = await postJSON("/v1/session/passkey", {login_id: options.login_id, credential: assertionJSON(cred)});
    if (!done.ok) throw new Error(String(done.status));
    location.href = "/m/";
  } catch (e) { error.hidden = false; }
}

function attestationJSON(cred) {
  const r = cred.response;
  return {id: cred.id, rawId: b64url(cred.rawId), type: cred.type, authenticatorAttachment: cred.authenticatorAttachment,
    response: {clientDataJSON: b64url(r.clientDataJSON), attestationObject: b64url(r.attestationObject),
      transports: r.getTransports ? r.getTransports() : []},
    clientExtensionResults: cred.getClientExtensionResults()};
}

async function enrol(button) {
  const token = button.dataset.passkeyEnrol;
  const result = document.querySelector("[data-enrolled]");
  try {
    const o = await (await postJSON(`/v1/enrolments/${token}/passkey/options`, {})).json();
    o.challenge = unb64url(o.challenge);
    o.user.id = unb64url(o.user.id);
    (o.excludeCredentials || []).forEach((c) => { c.id = unb64url(c.id); });
    const cred = await navigator.credentials.create({publicKey: o});
    const name = document.querySelector("[data-device-name]").value || "passkey";
    const done = await postJSON(`/v1/enrolments/${token}/passkey`, {name, credential: attestationJSON(cred)});
    result.textContent = done.ok ? result.dataset.ok : `${result.dataset.failed}: ${(await done.json()).detail}`;
    if (done.ok) button.disabled = true;
  } catch (e) { result.textContent = `${result.dataset.failed}: ${e.name || e}`; }
  result.hidden = false;
}

async function approve(section, code) {
  const a = JSON.parse(section.dataset.approval);
  const result = section.querySelector("[data-result]");
  const show = (text) => { result.textContent = text; result.hidden = false; };
  const challenge = await challengeOf(a);
  if (hex(challenge) !== a.challenge) { show(result.dataset.mismatch); return; }
  if (!a.devices.length) { show(result.dataset.noPasskey); return; }
  try {
    const cred = await navigator.credentials.get({publicKey: {challenge, rpId: a.rp_id, userVerification: "required",
      allowCredentials: a.devices.map((d) => ({type: "public-key", id: unb64url(d.credential_id)}))}});
    const device = a.devices.find((d) => d.credential_id === cred.id);
    const answer = await postJSON(`/v1/sign-requests/${a.request}/approval`,
      {device_id: device.id, challenge: a.challenge, verification_code: code, passkey: assertionJSON(cred)});
    const body = await answer.json();
    show(answer.ok && (body.state === "SIGNING" || body.state === "COMPLETED") ? result.dataset.approved
      : `${result.dataset.failed}: ${body.detail || body.result || body.state}`);
    section.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  } catch (e) { show(`${result.dataset.failed}: ${e.name || e}`); }
}

async function refuse(form, section) {
  const a = JSON.parse(section.dataset.approval);
  const reason = form.reason.value.trim();
  const answer = await postJSON(`/v1/sign-requests/${a.request}/refusal`, reason ? {reason} : {});
  const result = section.querySelector("[data-result]");
  result.textContent = answer.ok ? result.dataset.refused : result.dataset.failed;
  result.hidden = false;
  section.querySelectorAll("button").forEach((b) => { b.disabled = true; });
}

function countdowns() {
  document.querySelectorAll("[data-seconds]").forEach((el) => {
    let left = parseInt(el.dataset.seconds, 10);
    const prefix = el.textContent.replace(/[\d:]+\s*$/, "");
    setInterval(() => { left = Math.max(0, left - 1); el.textContent = `${prefix}${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`; }, 1000);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  countdowns();
  const enrolButton = document.querySelector("[data-passkey-enrol]");
  if (enrolButton) enrolButton.addEventListener("click", () => enrol(enrolButton));
  const loginButton = document.querySelector("[data-passkey-login]");
  if (loginButton) loginButton.addEventListener("click", () => login(loginButton));
  const section = document.querySelector("[data-approval]");
  if (section) {
    section.querySelectorAll("button.code").forEach((b) => b.addEventListener("click", () => approve(section, b.dataset.code)));
    const form = section.querySelector("[data-refuse]");
    form.addEventListener("submit", (ev) => { ev.preventDefault(); refuse(form, section); });
  }
  const live = document.querySelector("[data-live]");
  if (live && window.EventSource) {
    new EventSource(live.dataset.live).addEventListener("request", () => location.reload());
  }
  const logout = document.querySelector("[data-logout]");
  if (logout) logout.addEventListener("click", async (ev) => { ev.preventDefault(); await fetch("/v1/session", {method: "DELETE", credentials: "same-origin"}); location.href = "/m/login"; });
});
