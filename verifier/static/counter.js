// The counter page: staff choose a policy, show an OpenID4VP request QR and watch the verdict
// arrive, or verify an offline QR (pasted text or an uploaded image). No claim value is kept
// after the verdict is replaced; the API key lives in this tab's sessionStorage only.
"use strict";

const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem("civic-api-key") || "";
let policies = [];
let poll = null;
let challengeNonce = null;

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + apiKey, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}

function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }

function currentPolicy() { return policies.find((p) => p.id === $("policy").value); }

function showVerdict(verdict) {
  $("verdict").hidden = false;
  const badge = $("verdict-result");
  badge.textContent = verdict.result;
  badge.className = "badge " + verdict.result;
  const failed = (verdict.policy && verdict.policy.failed) || [];
  $("verdict-reason").textContent = verdict.reason
    ? "Reason: " + verdict.reason + (failed.length ? " (" + failed.join(", ") + ")" : "")
    : "All checks passed (trust checkpoint " + verdict.checkpoint_size + ").";
  const table = $("verdict-claims");
  table.replaceChildren();
  for (const credential of verdict.credentials || []) {
    for (const claim of credential.claims || []) {
      const row = table.insertRow();
      row.insertCell().textContent = claim.label ? claim.label.en + " / " + claim.label.ko
                                                 : claim.path.join(".");
      row.insertCell().textContent = JSON.stringify(claim.value);
    }
  }
  const list = $("verdict-checks");
  list.replaceChildren();
  for (const check of verdict.checks) {
    const item = document.createElement("li");
    item.className = check.outcome;
    item.textContent = check.name + (check.credential ? " [" + check.credential + "]" : "") +
      ": " + check.outcome + (check.reason ? " (" + check.reason + ")" : "");
    list.appendChild(item);
  }
}

async function unlock(event) {
  event.preventDefault();
  apiKey = $("api-key").value.trim();
  try {
    policies = await api("GET", "/policies");
  } catch (error) { showError(error); return; }
  sessionStorage.setItem("civic-api-key", apiKey);
  const select = $("policy");
  select.replaceChildren(...policies.map((p) => new Option(p.name + " (" + p.id + ")", p.id)));
  select.dispatchEvent(new Event("change"));
  $("counter").hidden = false;
  showError(null);
}

async function newRequest() {
  showError(null);
  if (poll) clearInterval(poll);
  try {
    const request = await api("POST", "/requests", { policy: $("policy").value });
    $("request").hidden = false;
    $("request-qr").src = "data:image/png;base64," + request.qr_png;
    $("request-uri").textContent = request.uri;
    $("request-status").textContent = "pending";
    poll = setInterval(async () => {
      try {
        const state = await api("GET", "/requests/" + encodeURIComponent(request.id));
        $("request-status").textContent = state.status;
        if (state.verdict) showVerdict(state.verdict);
        if (state.status !== "pending") clearInterval(poll);
      } catch (error) { showError(error); clearInterval(poll); }
    }, 1000);
  } catch (error) { showError(error); }
}

async function newChallenge() {
  showError(null);
  try {
    const challenge = await api("POST", "/challenges");
    challengeNonce = challenge.nonce;
    $("challenge").hidden = false;
    $("challenge-qr").src = "data:image/png;base64," + challenge.qr_png;
    $("challenge-nonce").textContent = challenge.nonce;
  } catch (error) { showError(error); }
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function verifyOffline(event) {
  event.preventDefault();
  showError(null);
  if (!challengeNonce) { showError("Show a new challenge to the wallet first."); return; }
  const body = { policy: $("policy").value, nonce: challengeNonce };
  const file = $("qr-image").files[0];
  if (file) {
    body.image_png = await readFile(file);
  } else {
    // One presentation per line; spaces belong to the base45 alphabet of packed QR text.
    const texts = $("qr-text").value.split(/\r?\n/).filter((t) => t.length > 0);
    if (texts.length === 0) { showError("Paste the scanned QR text or choose an image."); return; }
    if (texts.length === 1) body.presentation = texts[0]; else body.presentations = texts;
  }
  try {
    showVerdict(await api("POST", "/verify", body));
    challengeNonce = null;  // spent: the next holder gets a new challenge
    $("challenge").hidden = true;
    $("qr-text").value = "";
    $("qr-image").value = "";
  } catch (error) { showError(error); }
}

$("key-form").addEventListener("submit", unlock);
$("policy").addEventListener("change", () => {
  const policy = currentPolicy();
  $("policy-purpose").textContent = policy ? policy.purpose : "";
});
$("new-request").addEventListener("click", newRequest);
$("new-challenge").addEventListener("click", newChallenge);
$("offline-form").addEventListener("submit", verifyOffline);
if (apiKey) $("api-key").value = apiKey;
