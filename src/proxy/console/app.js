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
  await tokenRequest(body, {
    "Authorization": "Basic " + btoa(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`),
  }, clientId);
}

async function tokenRequest(body, headers, clientId) {
  const resp = await fetch(TOKEN_PATH, {
    method: "POST",
    headers: Object.assign({ "Content-Type": "application/x-www-form-urlencoded" }, headers),
    body,
    credentials: "omit",
    cache: "no-store",
  });
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(doc.error_description || doc.error || `sign-in refused (${resp.status})`);
  session = { token: doc.access_token, expiresAt: Date.now() + (doc.expires_in - 10) * 1000, clientId, root: false };
  signOutButton.hidden = false;
  // The root pages are offered only to an account the API lets list root service accounts;
  // the policy page to one it lets read the policy.
  session.root = await api("GET", "/api/service-accounts").then(() => true, () => false);
  session.policy = await api("GET", "/api/iamgate/policy").then(() => true, () => false);
}

// Keys and assertions for private_key_jwt, with WebCrypto: the private key never leaves the page
// except as the one download offered when it is generated.
const RSA = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const text64 = (s) => b64url(new TextEncoder().encode(s));

function pemToDer(pem) {
  const body = pem.replace(/-----(BEGIN|END) [A-Z ]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
}

function derToPem(der, label) {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der)));
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g).join("\n")}\n-----END ${label}-----\n`;
}

/** The RFC 7638 thumbprint of an RSA JWK: the key id iamgate gives a registered key. */
async function thumbprint(jwk) {
  const canonical = `{"e":"${jwk.e}","kty":"RSA","n":"${jwk.n}"}`;
  return b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonical)));
}

/** A client assertion for `clientId`, signed with the PKCS#8 PEM key `pem`. */
async function clientAssertion(clientId, pem) {
  const key = await crypto.subtle.importKey("pkcs8", pemToDer(pem), RSA, true, ["sign"]);
  const kid = await thumbprint(await crypto.subtle.exportKey("jwk", key));
  const now = Math.floor(Date.now() / 1000);
  const header = text64(JSON.stringify({ alg: "RS256", typ: "JWT", kid }));
  const claims = text64(JSON.stringify({
    iss: clientId, sub: clientId, aud: location.origin + TOKEN_PATH,
    jti: crypto.randomUUID(), iat: now, exp: now + 120,
  }));
  const signature = await crypto.subtle.sign(RSA, key, new TextEncoder().encode(`${header}.${claims}`));
  return `${header}.${claims}.${b64url(signature)}`;
}

async function signInWithKey(clientId, pem) {
  const body = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: clientId,
    client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    client_assertion: await clientAssertion(clientId, pem),
  });
  await tokenRequest(body, {}, clientId);
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
  if (!resp.ok) throw new Error(`${(doc && (doc.message || doc.error)) || "refused"} (HTTP ${resp.status})`);
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
  const keyId = el("input", { id: "key-client-id", name: "key-client-id", required: true });
  const keyFile = el("input", { id: "key-file", name: "key-file", type: "file", accept: ".pem,application/x-pem-file", required: true });
  const keyForm = el("form", { class: "card", "aria-labelledby": "key-title" },
    el("h2", { id: "key-title", text: "Or sign in with a private key" }),
    el("label", { for: "key-client-id" }, "Client ID of the key's account", keyId),
    el("label", { for: "key-file" }, "Private key file (PEM)", keyFile),
    el("button", { type: "submit", text: "Sign in with key" }));
  keyForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say("Signing in…");
    try {
      const pem = await keyFile.files[0].text();
      await signInWithKey(keyId.value.trim(), pem);
      keyFile.value = "";
      say("");
      go(next);
    } catch (e) {
      say(e.message || String(e), true);
    }
  });
  main.replaceChildren(form, keyForm);
  id.focus();
}

/** A modal dialog: focus stays inside until it closes; resolves with the submitted form's data
 * or null when cancelled. */
function dialog(title, fields, submitText) {
  return new Promise((resolve) => {
    const form = el("form", { method: "dialog", class: "card" }, el("h2", { text: title }), ...fields,
      el("div", {}, el("button", { type: "submit", value: "ok", text: submitText }), " ",
        el("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => d.close("cancel") })));
    const d = el("dialog", { "aria-label": title }, form);
    d.addEventListener("close", () => {
      const data = d.returnValue === "ok" ? new FormData(form) : null;
      d.remove();
      resolve(data);
    });
    document.body.append(d);
    d.showModal();
  });
}

function field(label, input) {
  return el("label", { for: input.id }, label, input);
}

/** The roles the caller may give in `company` (or at each level of `project`), as the policy
 * answers; the API still decides each edit. */
async function assignable(company, project) {
  const q = project ? `?projectId=${encodeURIComponent(project)}` : "";
  return api("GET", `/api/companies/${encodeURIComponent(company)}/assignable-roles${q}`);
}

/** A select of `roles`, `current` chosen (kept and marked when the caller may not give it),
 * with a "no role" choice when `none` names it. */
function roleSelect(id, name, roles, current, none) {
  const options = [];
  if (none) options.push(el("option", { value: "", text: none, selected: !current }));
  for (const r of roles) options.push(el("option", { value: r, text: r, selected: r === current }));
  if (current && !roles.includes(current)) {
    options.push(el("option", { value: current, text: `${current} (kept: not yours to give)`, selected: true }));
  }
  return el("select", { id, name }, ...options);
}

/** Shows a just-issued credential once, with a copy button. */
function showOnce(title, pairs, extra = []) {
  const rows = pairs.map(([k, v]) => el("p", {}, el("strong", { text: `${k}: ` }), el("code", { text: v }), " ",
    el("button", { type: "button", class: "secondary", text: `Copy ${k}`, onclick: () => navigator.clipboard.writeText(v) })));
  return dialog(title, [el("p", { class: "muted", text: "Shown once: it cannot be displayed again." }), ...rows, ...extra], "Done");
}

async function addServiceAccount(company) {
  const method = el("select", { id: "sa-method", name: "method" },
    el("option", { value: "client_secret_basic", text: "Client Secret Basic" }),
    el("option", { value: "private_key_jwt", text: "Private Key JWT" }));
  const key = el("textarea", { id: "sa-key", name: "publicKey", rows: "5", placeholder: "JWK or PEM public key" });
  const generate = el("input", { id: "sa-generate", name: "generate", type: "checkbox" });
  const keyField = el("div", { hidden: true }, field("Public key", key),
    el("label", { for: "sa-generate", class: "inline" }, generate, " Generate a key pair in this browser"));
  method.addEventListener("change", () => { keyField.hidden = method.value !== "private_key_jwt"; });
  let roles = [];
  try {
    roles = (await assignable(company)).company || [];
  } catch (e) {
    say(e.message, true);
  }
  const data = await dialog("Add Service Account", [
    field("Name", el("input", { id: "sa-name", name: "name", required: true })),
    field("Role", roleSelect("sa-role", "role", roles, roles[roles.length - 1], null)),
    field("Authentication method", method),
    keyField,
  ], "Add");
  if (!data) return;
  const body = { name: data.get("name"), role: data.get("role"), tokenEndpointAuthMethod: data.get("method") };
  let privatePem = null;
  try {
    if (body.tokenEndpointAuthMethod === "private_key_jwt") {
      if (data.get("generate")) {
        const pair = await crypto.subtle.generateKey(
          Object.assign({ modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) }, RSA), true, ["sign", "verify"]);
        const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
        body.publicKey = { kty: "RSA", n: jwk.n, e: jwk.e };
        privatePem = derToPem(await crypto.subtle.exportKey("pkcs8", pair.privateKey), "PRIVATE KEY");
      } else {
        body.publicKey = data.get("publicKey");
      }
    }
    const created = await api("POST", `/api/companies/${encodeURIComponent(company)}/service-accounts`, body);
    const pairs = [["Client ID", created.clientId]];
    if (created.clientSecret) pairs.push(["Client secret", created.clientSecret]);
    const extra = [];
    let url = null;
    if (privatePem) {
      url = URL.createObjectURL(new Blob([privatePem], { type: "application/x-pem-file" }));
      extra.push(el("p", {}, el("a", { href: url, download: `${created.clientId}.pem`, text: "Download the private key" })));
    }
    await showOnce("Service account created", pairs, extra);
    if (url) URL.revokeObjectURL(url);
  } catch (e) {
    say(e.message, true);
  }
  serviceAccountsPage(company);
}

async function deleteServiceAccount(company, account) {
  const ok = await dialog(`Delete service account ${account.name}?`,
    [el("p", { text: `The account ${account.name} (${account.clientId}) and its roles are removed; its tokens stop working.` })],
    "Delete");
  if (!ok) return;
  try {
    await api("DELETE", `/api/companies/${encodeURIComponent(company)}/service-accounts/${encodeURIComponent(account.clientId)}`);
    say(`Deleted ${account.name}.`);
  } catch (e) {
    say(e.message, true);
  }
  serviceAccountsPage(company);
}

function accountPath(company, account) {
  return `/api/companies/${encodeURIComponent(company)}/service-accounts/${encodeURIComponent(account.clientId)}`;
}

async function rotateSecret(company, account) {
  const ok = await dialog(`Rotate the secret of ${account.name}?`,
    [el("p", { text: "A new secret is issued and shown once; the old one keeps working only for the configured grace period." })],
    "Rotate");
  if (!ok) return;
  try {
    const r = await api("POST", `${accountPath(company, account)}/secret`);
    await showOnce("New client secret", [["Client ID", r.clientId], ["Client secret", r.clientSecret]]);
  } catch (e) {
    say(e.message, true);
  }
  serviceAccountsPage(company);
}

async function manageKeys(company, account) {
  const list = el("ul", {}, ...(account.kids || []).map((kid) => el("li", {}, el("code", { text: kid }), " ",
    el("button", { type: "button", class: "secondary", "aria-label": `Remove key ${kid}`, text: "Remove",
      onclick: async () => {
        d.close("cancel");
        try {
          await api("DELETE", `${accountPath(company, account)}/keys/${encodeURIComponent(kid)}`);
          say(`Removed key ${kid}.`);
        } catch (e) {
          say(e.message, true);
        }
        serviceAccountsPage(company);
      } }))));
  const key = el("textarea", { id: "new-key", name: "publicKey", rows: "5", placeholder: "JWK or PEM public key" });
  const pending = dialog(`Keys of ${account.name}`, [list, field("Add a public key", key)], "Add key");
  const d = document.querySelector("dialog:last-of-type");
  const data = await pending;
  if (!data || !data.get("publicKey")) return;
  try {
    const r = await api("POST", `${accountPath(company, account)}/keys`, { publicKey: data.get("publicKey") });
    say(`Added key ${r.kid}.`);
  } catch (e) {
    say(e.message, true);
  }
  serviceAccountsPage(company);
}

async function serviceAccountsPage(company) {
  main.replaceChildren(el("h1", { text: "Service accounts" }), el("p", { class: "muted", text: `Company ${company}` }),
    el("button", { type: "button", text: "Add Service Account", onclick: () => addServiceAccount(company) }));
  try {
    const accounts = await api("GET", `/api/companies/${encodeURIComponent(company)}/service-accounts`);
    const rows = (accounts || []).map((a) => el("tr", {},
      el("td", { text: a.name || "" }),
      el("td", {}, el("code", { text: a.clientId || "" })),
      el("td", { class: "optional", text: a.authMethod || "" }),
      el("td", { text: (a.companyRoles || []).join(", ") }),
      el("td", { class: "optional", text: a.lastLogin ? new Date(a.lastLogin * 1000).toLocaleString() : "never" }),
      el("td", {},
        a.authMethod === "private_key_jwt"
          ? el("button", { type: "button", class: "secondary", "aria-label": `Keys of ${a.name}`, text: "Keys",
            onclick: () => manageKeys(company, a) })
          : el("button", { type: "button", class: "secondary", "aria-label": `Rotate secret of ${a.name}`, text: "Rotate secret",
            onclick: () => rotateSecret(company, a) }),
        " ",
        el("button", { type: "button", class: "secondary", "aria-label": `Delete ${a.name}`, text: "Delete",
          onclick: () => deleteServiceAccount(company, a) }))));
    main.append(el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "Name" }), el("th", { scope: "col", text: "Client ID" }),
        el("th", { scope: "col", class: "optional", text: "Authentication method" }),
        el("th", { scope: "col", text: "Role" }), el("th", { scope: "col", class: "optional", text: "Last login" }),
        el("th", { scope: "col", text: "Actions" }))),
      el("tbody", {}, ...rows))));
  } catch (e) {
    main.append(el("p", { class: "error", role: "alert", text: e.message }));
  }
}

const KIND_PATH = { user: "users", group: "groups", serviceAccount: "service-accounts" };
const KIND_LABEL = { user: "User", group: "Group", serviceAccount: "Service account" };

async function editCompanyRole(company, identity) {
  let roles = [];
  try {
    roles = (await assignable(company)).company || [];
  } catch (e) {
    say(e.message, true);
  }
  const role = roleSelect("edit-role", "role", roles, (identity.companyRoles || [])[0] || "", "No company role");
  const data = await dialog(`Edit roles of ${identity.name}`, [field("Company role", role)], "Save");
  if (!data) return;
  try {
    await api("PATCH", `/api/companies/${encodeURIComponent(company)}/${KIND_PATH[identity.identityType]}/${encodeURIComponent(identity.identityId)}`,
      { role: data.get("role") });
    say(`Saved the roles of ${identity.name}.`);
  } catch (e) {
    say(e.message, true);
  }
  identitiesPage(company);
}

async function identitiesPage(company, kind = "") {
  const filter = el("select", { id: "kind", name: "kind" },
    el("option", { value: "", text: "All" }),
    ...Object.entries(KIND_LABEL).map(([v, t]) => el("option", { value: v, text: t, selected: v === kind })));
  filter.addEventListener("change", () => identitiesPage(company, filter.value));
  const projectId = el("input", { id: "open-project", name: "project", required: true });
  const openProject = el("form", { class: "inline-form" }, field("Project ID", projectId),
    el("button", { type: "submit", text: "Open Project IAM" }));
  openProject.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go(`/console/companies/${encodeURIComponent(company)}/projects/${encodeURIComponent(projectId.value.trim())}/identities`);
  });
  main.replaceChildren(el("h1", { text: "IAM portal" }), el("p", { class: "muted", text: `Company ${company}` }),
    openProject, field("Type", filter));
  try {
    const query = new URLSearchParams({ per_page: "200" });
    if (kind) query.set("identityType", kind);
    const rows = await api("GET", `/api/companies/${encodeURIComponent(company)}/identities?${query}`);
    main.append(el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "Name" }), el("th", { scope: "col", text: "Type" }),
        el("th", { scope: "col", text: "Company role" }), el("th", { scope: "col", text: "Actions" }))),
      el("tbody", {}, ...(rows || []).map((i) => el("tr", {},
        el("td", { text: i.name }), el("td", { text: KIND_LABEL[i.identityType] || i.identityType }),
        el("td", { text: (i.companyRoles || []).join(", ") }),
        el("td", {}, el("button", { type: "button", class: "secondary", "aria-label": `Edit ${i.name}`, text: "Edit",
          onclick: () => editCompanyRole(company, i) }))))))));
  } catch (e) {
    main.append(el("p", { class: "error", role: "alert", text: e.message }));
  }
}

async function rootAccountsPage() {
  main.replaceChildren(el("h1", { text: "Root service accounts" }));
  try {
    const accounts = await api("GET", "/api/service-accounts");
    main.append(el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "Name" }), el("th", { scope: "col", text: "Client ID" }),
        el("th", { scope: "col", text: "Permissions" }), el("th", { scope: "col", text: "Actions" }))),
      el("tbody", {}, ...(accounts || []).map((a) => el("tr", {},
        el("td", { text: a.name }), el("td", {}, el("code", { text: a.clientId })),
        el("td", { text: (a.permissions || []).join(", ") }),
        el("td", {}, el("button", { type: "button", class: "secondary", "aria-label": `Delete ${a.name}`, text: "Delete",
          onclick: () => deleteRootAccount(a) }))))))));
  } catch (e) {
    main.append(el("p", { class: "error", role: "alert", text: e.message }));
  }
}

async function deleteRootAccount(account) {
  const ok = await dialog(`Delete root service account ${account.name}?`,
    [el("p", { text: `The account ${account.name} (${account.clientId}) is removed; its tokens stop working.` })], "Delete");
  if (!ok) return;
  try {
    await api("DELETE", `/api/service-accounts/${encodeURIComponent(account.clientId)}`);
    say(`Deleted ${account.name}.`);
  } catch (e) {
    say(e.message, true);
  }
  rootAccountsPage();
}

function rootLink() {
  const links = [];
  if (session && session.root) links.push(el("a", { href: "/console/root/service-accounts", text: "Root service accounts" }));
  if (session && session.policy) links.push(el("a", { href: "/console/policy", text: "Policy" }));
  return links;
}

function decisionResult(r) {
  return el("section", { "aria-label": "Decision", class: "result" },
    el("h2", { text: r.allow ? "Allowed" : "Denied" }),
    el("p", {}, el("strong", { text: "Reason: " }), el("code", { text: r.reason }),
      el("span", { class: "muted", text: ` (revision ${r.revision})` })),
    el("h3", { text: "Why" }), el("pre", { text: JSON.stringify(r.explain, null, 2) }));
}

async function policyPage() {
  main.replaceChildren(el("h1", { text: "Policy" }));
  const out = el("div", { id: "playground-result" });
  try {
    const st = await api("GET", "/api/iamgate/policy");
    main.append(el("p", {}, "Live revision ", el("code", { text: st.revision }), `: ${st.testsPassed} tests passed`,
      st.shadowRevision ? el("span", {}, "; shadow revision ", el("code", { text: st.shadowRevision })) : ""));
    const decisions = await api("GET", "/api/iamgate/decisions");
    const explain = async (d) => {
      try {
        const r = await api("POST", "/api/iamgate/policy/eval", { decisionId: d.id });
        out.replaceChildren(decisionResult(r));
        // The decision's input goes to the playground, to be edited and decided again.
        input.value = JSON.stringify(r.input, null, 2);
      } catch (e) {
        out.replaceChildren(el("p", { class: "error", role: "alert", text: e.message }));
      }
    };
    main.append(el("h2", { text: "Recent decisions" }),
      el("p", { class: "muted", text: "The latest 25; decisions answered from the cache did not keep their input." }),
      el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "When" }), el("th", { scope: "col", text: "Subject" }),
        el("th", { scope: "col", text: "Request" }), el("th", { scope: "col", class: "optional", text: "Route" }),
        el("th", { scope: "col", text: "Outcome" }), el("th", { scope: "col", text: "Actions" }))),
      el("tbody", {}, ...(decisions || []).slice(0, 25).map((d) => el("tr", {},
        el("td", { text: new Date(d.at * 1000).toLocaleTimeString() }), el("td", {}, el("code", { text: d.subject })),
        el("td", { text: `${d.method} ${d.path}` }), el("td", { class: "optional", text: d.route }),
        el("td", { text: `${d.allow ? "allow" : "deny"} (${d.reason})` }),
        el("td", {}, d.hasInput
          ? el("button", { type: "button", class: "secondary", "aria-label": `Explain decision ${d.id}`, text: "Explain",
            onclick: () => explain(d) })
          : el("span", { class: "muted", text: "cached" }))))))));
  } catch (e) {
    main.append(el("p", { class: "error", role: "alert", text: e.message }));
    return;
  }
  const input = el("textarea", { id: "playground-input", name: "input", rows: "12" });
  const form = el("form", { class: "card wide" }, el("h2", { text: "Playground" }),
    field("Input document (JSON)", input), el("button", { type: "submit", text: "Decide" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let doc;
    try {
      doc = JSON.parse(input.value);
    } catch (e) {
      out.replaceChildren(el("p", { class: "error", role: "alert", text: `Not JSON: ${e.message}` }));
      return;
    }
    try {
      out.replaceChildren(decisionResult(await api("POST", "/api/iamgate/policy/eval", { input: doc })));
    } catch (e) {
      out.replaceChildren(el("p", { class: "error", role: "alert", text: e.message }));
    }
  });
  main.append(form, out);
}

async function editProjectRoles(company, project, identity) {
  const mine = (identity.projects || [])[0] || { roles: [], environments: [] };
  let may = {};
  try {
    may = await assignable(company, project);
  } catch (e) {
    say(e.message, true);
  }
  const projectRole = roleSelect("edit-project-role", "project", may.project || [], (mine.roles || [])[0] || "", "No project role");
  const envFields = (mine.environments || []).map((e) => field(`Role in ${e.envId}`,
    roleSelect(`edit-env-${e.envId}`, `env:${e.envId}`, may[`environment:${e.envId}`] || [], (e.roles || [])[0] || "", "No role")));
  const data = await dialog(`Edit roles of ${identity.name} in ${project}`,
    [field("Project role", projectRole), ...envFields], "Save");
  if (!data) return;
  const entry = { projectId: project };
  if (data.get("project")) entry.role = data.get("project");
  const envs = [];
  for (const [k, v] of data.entries()) {
    if (k.startsWith("env:") && v) envs.push({ envId: k.slice(4), role: v });
  }
  if (envs.length) entry.environmentsRole = envs;
  try {
    await api("PATCH", `/api/companies/${encodeURIComponent(company)}/${KIND_PATH[identity.identityType]}/${encodeURIComponent(identity.identityId)}`,
      { projectsRole: [entry] });
    say(`Saved the roles of ${identity.name} in ${project}.`);
  } catch (e) {
    say(e.message, true);
  }
  projectIdentitiesPage(company, project);
}

async function projectIdentitiesPage(company, project) {
  main.replaceChildren(el("h1", { text: "Project IAM" }),
    el("p", { class: "muted", text: `Company ${company}, project ${project}` }));
  try {
    const query = new URLSearchParams({ per_page: "200", projectIds: project });
    const rows = await api("GET", `/api/companies/${encodeURIComponent(company)}/identities?${query}`);
    main.append(el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col", text: "Name" }), el("th", { scope: "col", text: "Type" }),
        el("th", { scope: "col", text: "Project role" }), el("th", { scope: "col", text: "Runtime Environment roles" }),
        el("th", { scope: "col", text: "Actions" }))),
      el("tbody", {}, ...(rows || []).map((i) => {
        const p = (i.projects || [])[0] || { roles: [], environments: [] };
        const envs = (p.environments || []).filter((e) => (e.roles || []).length)
          .map((e) => `${e.envId}: ${e.roles.join(", ")}`).join("; ");
        return el("tr", {},
          el("td", { text: i.name }), el("td", { text: KIND_LABEL[i.identityType] || i.identityType }),
          el("td", { text: (p.roles || []).join(", ") }), el("td", { text: envs }),
          el("td", {}, el("button", { type: "button", class: "secondary", "aria-label": `Edit ${i.name}`, text: "Edit",
            onclick: () => editProjectRoles(company, project, i) })));
      })))));
  } catch (e) {
    main.append(el("p", { class: "error", role: "alert", text: e.message }));
  }
}

function companyNav(company) {
  const c = encodeURIComponent(company);
  nav.replaceChildren(
    el("a", { href: `/console/companies/${c}/service-accounts`, text: "Service accounts" }),
    el("a", { href: `/console/companies/${c}/identities`, text: "IAM portal" }), ...rootLink());
}

async function homePage() {
  const company = el("input", { id: "company", name: "company", required: true });
  const form = el("form", { class: "card" },
    el("label", { for: "company" }, "Company ID", company),
    el("button", { type: "submit", text: "Open" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go(`/console/companies/${encodeURIComponent(company.value.trim())}/service-accounts`);
  });
  main.replaceChildren(el("h1", { text: "Companies" }));
  // The Console's company list, filtered by the policy to the companies the caller may view;
  // without a Console behind the gateway, the company is typed in.
  try {
    const companies = await api("GET", "/api/backend/tenants/");
    if (Array.isArray(companies) && companies.length) {
      main.append(el("ul", { class: "companies" }, ...companies.map((c) => el("li", {},
        el("a", { href: `/console/companies/${encodeURIComponent(c.tenantId)}/service-accounts`, text: c.name || c.tenantId }),
        el("span", { class: "muted", text: ` ${c.tenantId}` })))));
    } else {
      main.append(el("p", { class: "muted", text: "No company to show." }));
    }
  } catch (e) {
    main.append(el("p", { class: "muted", text: `The company list is unavailable (${e.message}).` }));
  }
  main.append(el("h2", { text: "Open a company" }), form);
}

function go(path) {
  history.pushState({}, "", path);
  route();
}

function route() {
  const path = location.pathname;
  if (!signedIn()) { signInPage(path); return; }
  const pm = path.match(/^\/console\/companies\/([^/]+)\/projects\/([^/]+)\/identities\/?$/);
  if (pm) {
    const company = decodeURIComponent(pm[1]);
    companyNav(company);
    projectIdentitiesPage(company, decodeURIComponent(pm[2]));
    return;
  }
  const m = path.match(/^\/console\/companies\/([^/]+)\/(service-accounts|identities)\/?$/);
  if (m) {
    const company = decodeURIComponent(m[1]);
    companyNav(company);
    if (m[2] === "identities") identitiesPage(company);
    else serviceAccountsPage(company);
    return;
  }
  nav.replaceChildren(...rootLink());
  if (/^\/console\/root\/service-accounts\/?$/.test(path)) { rootAccountsPage(); return; }
  if (/^\/console\/policy\/?$/.test(path)) { policyPage(); return; }
  homePage();
}

window.addEventListener("popstate", route);
document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[href^='/console/']");
  if (a && !ev.metaKey && !ev.ctrlKey) { ev.preventDefault(); go(a.getAttribute("href")); }
});
route();
