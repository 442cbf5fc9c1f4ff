// The iamgate console: plain ES module, no build step, no third-party code. The access token
// lives in this module's memory only: never in storage, cookies or URLs. Every action goes
// through the same management API as the documentation's curls; the API decides.

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const status = document.getElementById("status");
const signOutButton = document.getElementById("sign-out");

const TOKEN_PATH = "/api/m2m/oauth/token";
let session = null; // { token, expiresAt, clientId }

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== undefined && v !== null) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) e.append(c);
  return e;
}

function say(message, bad = false) {
  status.textContent = message;
  status.className = bad ? "error" : "";
}

function signedIn() {
  return session !== null && Date.now() < session.expiresAt;
}

function signOut() {
  session = null;
  signOutButton.hidden = true;
  nav.replaceChildren();
  route();
}
signOutButton.addEventListener("click", signOut);

async function signIn(clientId, clientSecret) {
  const body = new URLSearchParams({ grant_type: "client_credentials" });
  const resp = await fetch(TOKEN_PATH, {
    method: "POST",
    headers: {
      "Authorization": "Basic " + btoa(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`),
      "Content-Type": "application/x-www-form-urlencoded",
    },
    body,
    credentials: "omit",
    cache: "no-store",
  });
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(doc.error_description || doc.error || `sign-in refused (${resp.status})`);
  session = { token: doc.access_token, expiresAt: Date.now() + (doc.expires_in - 10) * 1000, clientId };
  signOutButton.hidden = false;
}

/** Calls the management API; a 401 (expired or revoked token) returns to sign-in. */
export async function api(method, path, body) {
  if (!signedIn()) { signOut(); throw new Error("signed out"); }
  const resp = await fetch(path, {
    method,
    headers: Object.assign({ "Authorization": `Bearer ${session.token}` },
      body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (resp.status === 401) { signOut(); throw new Error("your session ended; sign in again"); }
  const text = await resp.text();
  const doc = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new Error((doc && (doc.message || doc.error)) || `refused (${resp.status})`);
  return doc;
}

function signInPage(next) {
  const id = el("input", { id: "client-id", name: "client-id", autocomplete: "username", required: true });
  const secret = el("input", { id: "client-secret", name: "client-secret", type: "password", autocomplete: "current-password", required: true });
  const form = el("form", { class: "card", "aria-labelledby": "sign-in-title" },
    el("h1", { id: "sign-in-title", text: "Sign in" }),
    el("p", { class: "muted", text: "Sign in with a service account's credentials." }),
    el("label", { for: "client-id" }, "Client ID", id),
    el("label", { for: "client-secret" }, "Client secret", secret),
    el("button", { type: "submit", text: "Sign in" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say("Signing in…");
    try {
      await signIn(id.value.trim(), secret.value);
      secret.value = "";
      say("");
      go(next);
    } catch (e) {
      say(e.message, true);
    }
  });
  main.replaceChildren(form);
  id.focus();
}

async function serviceAccountsPage(company) {
  main.replaceChildren(el("h1", { text: "Service accounts" }), el("p", { class: "muted", text: `Company ${company}` }));
  try {
    const accounts = await api("GET", `/api/companies/${encodeURIComponent(company)}/service-accounts`);
    const rows = (accounts || []).map((a) => el("tr", {},
      el("td", { text: a.name || "" }),
      el("td", {}, el("code", { text: a.clientId || "" })),
      el("td", { class: "optional", text: a.tokenEndpointAuthMethod || "" }),
      el("td", { text: a.companyRole || a.role || "" }),
      el("td", { class: "optional", text: a.lastLogin ? new Date(a.lastLogin).toLocaleString() : "never" })));
    main.append(el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "Name" }), el("th", { scope: "col", text: "Client ID" }),
        el("th", { scope: "col", class: "optional", text: "Authentication method" }),
        el("th", { scope: "col", text: "Role" }), el("th", { scope: "col", class: "optional", text: "Last login" }))),
      el("tbody", {}, ...rows))));
  } catch (e) {
    main.append(el("p", { class: "error", role: "alert", text: e.message }));
  }
}

function homePage() {
  const company = el("input", { id: "company", name: "company", required: true });
  const form = el("form", { class: "card" },
    el("h1", { text: "Open a company" }),
    el("label", { for: "company" }, "Company ID", company),
    el("button", { type: "submit", text: "Open" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go(`/console/companies/${encodeURIComponent(company.value.trim())}/service-accounts`);
  });
  main.replaceChildren(form);
}

function go(path) {
  history.pushState({}, "", path);
  route();
}

function route() {
  const path = location.pathname;
  if (!signedIn()) { signInPage(path); return; }
  const m = path.match(/^\/console\/companies\/([^/]+)\/service-accounts\/?$/);
  if (m) { serviceAccountsPage(decodeURIComponent(m[1])); return; }
  homePage();
}

window.addEventListener("popstate", route);
document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[href^='/console/']");
  if (a && !ev.metaKey && !ev.ctrlKey) { ev.preventDefault(); go(a.getAttribute("href")); }
});
route();
