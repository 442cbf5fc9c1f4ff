"""The web console in a real browser: Playwright driving Debian's Chromium, headless, against a
real `iamgate serve` process. Each step is checked through the API as well as on the page.

Without Chromium at /usr/bin/chromium (or IAMGATE_CHROMIUM) the test is skipped with a loud
reason; with IAMGATE_REQUIRE_CHROMIUM=1 (CI) it fails instead.
"""

import base64
import contextlib
import http.server
import json
import os
import subprocess
import threading
import urllib.error
import urllib.request

import pytest
from iamgate_process import BIN, serving

CHROMIUM = os.environ.get("IAMGATE_CHROMIUM", "/usr/bin/chromium")


def need_chromium():
    if os.path.exists(CHROMIUM):
        return
    message = (f"SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium): "
               "the console's browser tests did not run")
    if os.environ.get("IAMGATE_REQUIRE_CHROMIUM") == "1":
        pytest.fail(message)
    print("\n" + "!" * 20 + " " + message + " " + "!" * 20)
    pytest.skip(message)



def call(base, method, path, token=None, body=None, basic=None, form=None):
    headers = {}
    data = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = form.encode()
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        return e.code, None


COMPANIES = [{"tenantId": "acme", "name": "Acme"}, {"tenantId": "globex", "name": "Globex"}]


class ConsoleApi(http.server.BaseHTTPRequestHandler):
    """The Console API behind the gateway, as far as these tests need it: its company list."""

    def do_GET(self):
        body = json.dumps(COMPANIES if self.path.startswith("/api/backend/tenants/") else {}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ConsoleApi)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    data = tmp_path_factory.mktemp("console") / "data"
    try:
        with serving(data, IAMGATE_UPSTREAM=f"http://127.0.0.1:{upstream.server_address[1]}") as base:
            creds = json.loads((data / "bootstrap-credentials.json").read_text())
            yield {"base": base, "id": creds["clientId"], "secret": creds["clientSecret"]}
    finally:
        upstream.shutdown()


def admin_token(c):
    status, doc = call(c["base"], "POST", "/api/m2m/oauth/token", basic=f"{c['id']}:{c['secret']}",
                       form="grant_type=client_credentials")
    assert status == 200
    return doc["access_token"]


SHOTS = os.environ.get("IAMGATE_CONSOLE_SCREENSHOTS")


def shot(page, name):
    """Saves a screenshot for docs/console/ when IAMGATE_CONSOLE_SCREENSHOTS names a folder."""
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def company_account(c, name, role, **extra):
    """A service account of company acme, created through the API with the bootstrap account."""
    body = {"name": name, "role": role, "tokenEndpointAuthMethod": "client_secret_basic", **extra}
    status, created = call(c["base"], "POST", "/api/companies/acme/service-accounts",
                           token=admin_token(c), body=body)
    assert status == 201, status
    return created


def token_of(c, created):
    status, doc = call(c["base"], "POST", "/api/m2m/oauth/token",
                       basic=f"{created['clientId']}:{created['clientSecret']}",
                       form="grant_type=client_credentials")
    assert status == 200
    return doc["access_token"]


@contextlib.contextmanager
def browser_page(width=1280, height=800, **options):
    """A page of a headless Chromium, closed afterwards."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    from playwright.sync_api import expect

    # CI runs these beside the whole integration suite on two cores: waits are generous, and
    # still bounded.
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, **options)
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def sign_in(page, c):
    page.get_by_label("Client ID", exact=True).fill(c["id"])
    page.get_by_label("Client secret").fill(c["secret"])
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_sign_in_then_create_an_account_see_its_secret_once_and_delete_it(console):
    from playwright.sync_api import expect

    base = console["base"]
    listing = "/api/companies/acme/service-accounts"
    with browser_page() as page:
        outside = []
        page.on("request", lambda r: None if r.url.startswith(base) else outside.append(r.url))
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

        # A deep link asks to sign in, then opens the page it named.
        page.goto(base + "/console/companies/acme/service-accounts")
        shot(page, "sign-in")
        sign_in(page, console)
        expect(page.get_by_role("heading", name="Service accounts")).to_be_visible()
        assert page.url == base + "/console/companies/acme/service-accounts"

        # Add Service Account: the secret is shown once.
        page.get_by_role("button", name="Add Service Account").click()
        page.get_by_label("Name").fill("ui-basic")
        page.get_by_label("Role").select_option("developer")
        page.get_by_role("button", name="Add", exact=True).click()
        codes = page.locator("dialog code")
        expect(codes).to_have_count(2)
        client_id, secret = codes.nth(0).text_content(), codes.nth(1).text_content()
        shot(page, "secret-shown-once")
        page.get_by_role("button", name="Done", exact=True).click()
        expect(page.get_by_role("cell", name="ui-basic", exact=True)).to_be_visible()
        shot(page, "service-accounts")

        # Through the API: the account exists, and its secret is a working credential.
        status, accounts = call(base, "GET", listing, token=admin_token(console))
        assert status == 200
        assert [a["name"] for a in accounts if a["clientId"] == client_id] == ["ui-basic"]
        status, _ = call(base, "POST", "/api/m2m/oauth/token", basic=f"{client_id}:{secret}",
                         form="grant_type=client_credentials")
        assert status == 200

        # The token lives in memory only: a reload asks to sign in again, and the secret is
        # never shown again.
        page.reload()
        expect(page.get_by_label("Client secret")).to_be_visible()
        sign_in(page, console)
        expect(page.get_by_role("cell", name="ui-basic", exact=True)).to_be_visible()
        assert secret not in page.content()

        # Delete, with confirmation.
        page.get_by_role("button", name="Delete ui-basic").click()
        expect(page.get_by_role("dialog")).to_contain_text("ui-basic")
        page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
        expect(page.get_by_role("cell", name="ui-basic", exact=True)).to_have_count(0)
        status, accounts = call(base, "GET", listing, token=admin_token(console))
        assert client_id not in [a["clientId"] for a in accounts]

        assert outside == [], f"fetched from outside the gateway: {outside}"
        assert problems == [], f"errors in the page: {problems}"


def test_the_iam_portal_edits_a_company_role_and_the_api_has_it(console):
    from playwright.sync_api import expect

    base = console["base"]
    created = company_account(console, "ui-edit", "developer")
        # A phone-sized screen: nothing may need horizontal scrolling.
    with browser_page(390, 844) as page:
        page.goto(base + "/console/companies/acme/identities")
        sign_in(page, console)
        expect(page.get_by_role("heading", name="IAM portal")).to_be_visible()
        page.get_by_label("Type").select_option("serviceAccount")
        # The filter redraws the table after its request: act on the new one, not the old.
        page.wait_for_load_state("networkidle")
        expect(page.get_by_role("cell", name="ui-edit", exact=True)).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.get_by_role("button", name="Edit ui-edit").click()
        role = page.get_by_label("Company role")
        expect(role).to_be_focused()
        # The dialog offers what the policy lets this caller give, and a way to remove.
        status, may = call(base, "GET", "/api/companies/acme/assignable-roles", token=admin_token(console))
        assert status == 200
        offered = role.locator("option").evaluate_all("os => os.map(o => o.value)")
        assert offered == [""] + may["company"], (offered, may)
        role.select_option("reporter")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("row", name="ui-edit")).to_contain_text("reporter")
        shot(page, "iam-portal-phone")
    status, rows = call(base, "GET", "/api/companies/acme/identities?identityType=serviceAccount",
                        token=admin_token(console))
    assert status == 200
    mine = [r for r in rows if r["identityId"] == created["clientId"]]
    assert mine and mine[0]["companyRoles"] == ["reporter"], rows


def test_a_company_owner_sees_neither_another_company_nor_the_root_pages(console):
    from playwright.sync_api import expect

    base = console["base"]
    owner = company_account(console, "ui-owner", "company-owner")
    me = {"id": owner["clientId"], "secret": owner["clientSecret"]}
    with browser_page() as page:
        page.goto(base + "/console/companies/acme/service-accounts")
        sign_in(page, me)
        expect(page.get_by_role("cell", name="ui-owner", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="Root service accounts")).to_have_count(0)

        # Another company: the API refuses, and the page says so.
        page.goto(base + "/console/companies/globex/service-accounts")
        sign_in(page, me)
        expect(page.get_by_role("alert")).to_contain_text("HTTP 403")
        expect(page.get_by_role("cell")).to_have_count(0)

        # The root page, reached by its URL: refused by the API, nothing listed.
        page.goto(base + "/console/root/service-accounts")
        sign_in(page, me)
        expect(page.get_by_role("alert")).to_contain_text("HTTP 403")
        expect(page.get_by_role("cell")).to_have_count(0)

        # The bootstrap account holds the root permissions: it is offered the root page.
        page.goto(base + "/console/")
        sign_in(page, console)
        page.get_by_role("link", name="Root service accounts").click()
        expect(page.get_by_role("heading", name="Root service accounts")).to_be_visible()
        expect(page.get_by_role("cell", name=console["id"])).to_be_visible()
        shot(page, "root-service-accounts")


def test_project_iam_edits_project_and_runtime_environment_roles(console):
    from playwright.sync_api import expect

    base = console["base"]
    token = admin_token(console)
    project = "64b7e1a0c0ffee00000000c1"
    # The project becomes known the way a Console registers one: by a company owner.
    owner = company_account(console, "ui-project-owner", "company-owner")
    status, _ = call(base, "PUT", f"/api/iamgate/directory/projects/{project}",
                     token=token_of(console, owner),
                     body={"companyId": "acme", "environments": ["dev", "prod"]})
    assert status in (200, 201, 204), status
    sa = company_account(console, "ui-project", "reporter")
    with browser_page() as page:
        page.goto(base + f"/console/companies/acme/projects/{project}/identities")
        sign_in(page, console)
        expect(page.get_by_role("heading", name="Project IAM")).to_be_visible()
        page.get_by_role("button", name="Edit ui-project", exact=True).click()
        page.get_by_label("Project role").select_option("developer")
        page.get_by_label("Role in dev").select_option("reporter")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("row").filter(has=page.get_by_role("cell", name="ui-project", exact=True))).to_contain_text("dev: reporter")
        shot(page, "project-iam")
    status, rows = call(base, "GET",
                        f"/api/companies/acme/identities?identityType=serviceAccount&projectIds={project}",
                        token=admin_token(console))
    assert status == 200
    mine = [r for r in rows if r["identityId"] == sa["clientId"]][0]
    roles = mine["projects"][0]
    assert roles["roles"] == ["developer"], mine
    assert {e["envId"]: e["roles"] for e in roles["environments"]} == {"dev": ["reporter"], "prod": []}, mine


def test_a_key_pair_generated_in_the_browser_signs_its_account_in(console, tmp_path):
    from playwright.sync_api import expect

    base = console["base"]
    with browser_page(accept_downloads=True) as page:
        page.goto(base + "/console/companies/acme/service-accounts")
        sign_in(page, console)
        page.get_by_role("button", name="Add Service Account").click()
        page.get_by_label("Name").fill("ui-jwt")
        page.get_by_label("Role").select_option("developer")
        page.get_by_label("Authentication method").select_option("private_key_jwt")
        page.get_by_label("Generate a key pair in this browser").check()
        page.get_by_role("button", name="Add", exact=True).click()
        codes = page.locator("dialog code")
        expect(codes).to_have_count(1)  # a client id, and no secret
        client_id = codes.nth(0).text_content()
        with page.expect_download() as download:
            page.get_by_role("link", name="Download the private key").click()
        key_file = tmp_path / "key.pem"
        download.value.save_as(key_file)
        assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
        page.get_by_role("button", name="Done", exact=True).click()

        # Through the API: a private_key_jwt account with one key.
        status, accounts = call(base, "GET", "/api/companies/acme/service-accounts",
                                token=admin_token(console))
        mine = [a for a in accounts if a["clientId"] == client_id]
        assert mine and mine[0]["authMethod"] == "private_key_jwt" and len(mine[0]["kids"]) == 1

        # The downloaded key signs the account in, with an assertion made in the page.
        page.get_by_role("button", name="Sign out").click()
        page.goto(base + "/console/companies/acme/service-accounts")
        page.get_by_label("Client ID of the key's account").fill(client_id)
        page.get_by_label("Private key file (PEM)").set_input_files(str(key_file))
        page.get_by_role("button", name="Sign in with key").click()
        # A developer may list the company's accounts: the table shows, itself included.
        expect(page.get_by_role("cell", name="ui-jwt", exact=True)).to_be_visible()


def generated_public_pem(tmp_path, name):
    out = subprocess.run([BIN, "keys", "generate", "--out", str(tmp_path / f"{name}.pem")],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_rotating_a_secret_and_adding_and_removing_keys(console, tmp_path):
    from playwright.sync_api import expect

    base = console["base"]
    token = admin_token(console)
    basic = company_account(console, "ui-rotate", "developer")
    first, second = generated_public_pem(tmp_path, "k1"), generated_public_pem(tmp_path, "k2")
    status, keyed = call(base, "POST", "/api/companies/acme/service-accounts", token=token,
                         body={"name": "ui-keys", "role": "developer",
                               "tokenEndpointAuthMethod": "private_key_jwt",
                               "publicKey": first["publicKeyPem"]})
    assert status == 201

    def kids():
        _, accounts = call(base, "GET", "/api/companies/acme/service-accounts", token=admin_token(console))
        return [a for a in accounts if a["clientId"] == keyed["clientId"]][0]["kids"]

    with browser_page() as page:
        page.goto(base + "/console/companies/acme/service-accounts")
        sign_in(page, console)
        page.get_by_role("button", name="Rotate secret of ui-rotate").click()
        page.get_by_role("button", name="Rotate", exact=True).click()
        codes = page.locator("dialog code")
        expect(codes).to_have_count(2)
        new_secret = codes.nth(1).text_content()
        assert new_secret != basic["clientSecret"]
        page.get_by_role("button", name="Done", exact=True).click()
        status, _ = call(base, "POST", "/api/m2m/oauth/token",
                         basic=f"{basic['clientId']}:{new_secret}", form="grant_type=client_credentials")
        assert status == 200

        page.get_by_role("button", name="Keys of ui-keys").click()
        page.get_by_label("Add a public key").fill(second["publicKeyPem"])
        page.get_by_role("button", name="Add key", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("Added key")
        assert sorted(kids()) == sorted([first["kid"], second["kid"]])
        page.get_by_role("button", name="Keys of ui-keys").click()
        page.get_by_role("button", name=f"Remove key {first['kid']}").click()
        expect(page.get_by_role("status")).to_contain_text("Removed key")
        assert kids() == [second["kid"]]


def test_the_policy_playground_explains_a_denial(console):
    from playwright.sync_api import expect

    base = console["base"]
    token = admin_token(console)
    sa = company_account(console, "ui-denied", "reporter")
    # A reporter of acme may not list another company's service accounts: a denial, recorded.
    status, _ = call(base, "GET", "/api/companies/globex/service-accounts", token=token_of(console, sa))
    assert status == 403
    with browser_page() as page:
        page.goto(base + "/console/policy")
        sign_in(page, console)
        expect(page.get_by_role("heading", name="Policy", exact=True)).to_be_visible()
        expect(page.get_by_text("tests passed")).to_be_visible()
        row = page.get_by_role("row").filter(has_text="/api/companies/globex/service-accounts").filter(
            has_text=sa["clientId"]).first
        expect(row).to_contain_text("deny")
        row.get_by_role("button", name="Explain").click()
        result = page.get_by_role("region", name="Decision")
        expect(result).to_contain_text("Denied")
        expect(result.locator("pre")).not_to_be_empty()
        shot(page, "policy")

        # The playground decides an edited input: the same request in the caller's own
        # company is allowed.
        text = page.get_by_label("Input document (JSON)").input_value()
        edited = json.loads(text)
        edited["resource"]["companyId"] = "acme"
        edited["request"]["path"] = "/api/companies/acme/service-accounts"
        edited["request"]["pathParams"] = {"companyId": "acme"}
        page.get_by_label("Input document (JSON)").fill(json.dumps(edited))
        page.get_by_role("button", name="Decide", exact=True).click()
        expect(page.get_by_role("region", name="Decision")).to_contain_text("Allowed")


def test_the_company_picker_offers_only_the_companies_the_caller_may_view(console):
    from playwright.sync_api import expect

    base = console["base"]
    owner = company_account(console, "ui-picker", "company-owner")
    with browser_page() as page:
        page.goto(base + "/console/")
        sign_in(page, {"id": owner["clientId"], "secret": owner["clientSecret"]})
        expect(page.get_by_role("link", name="Acme")).to_be_visible()
        expect(page.get_by_role("link", name="Globex")).to_have_count(0)
        shot(page, "companies")
        page.get_by_role("link", name="Acme").click()
        expect(page.get_by_role("heading", name="Service accounts")).to_be_visible()
        assert page.url == base + "/console/companies/acme/service-accounts"


def test_every_page_fits_a_phone_and_an_ended_session_returns_to_sign_in(console):
    from playwright.sync_api import expect

    base = console["base"]
    pages = ["/console/", "/console/companies/acme/service-accounts",
             "/console/companies/acme/identities",
             "/console/companies/acme/projects/64b7e1a0c0ffee00000000c1/identities",
             "/console/root/service-accounts", "/console/policy"]
    with browser_page(390, 844) as page:
        page.goto(base + "/console/")
        sign_in(page, console)
        for path in pages:
            page.evaluate("p => { history.pushState({}, '', p); dispatchEvent(new PopStateEvent('popstate')); }", path)
            expect(page.get_by_role("heading").first).to_be_visible()
            page.wait_for_load_state("networkidle")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} scrolls sideways ({width} px)"

    # An account deleted while signed in: its next call is refused, and the page asks to sign in.
    gone = company_account(console, "ui-gone", "company-owner")
    with browser_page() as page:
        page.goto(base + "/console/companies/acme/service-accounts")
        sign_in(page, {"id": gone["clientId"], "secret": gone["clientSecret"]})
        expect(page.get_by_role("cell", name="ui-gone", exact=True)).to_be_visible()
        status, _ = call(base, "DELETE", f"/api/companies/acme/service-accounts/{gone['clientId']}",
                         token=admin_token(console))
        assert status == 204
        page.get_by_role("link", name="IAM portal").click()
        expect(page.get_by_label("Client secret")).to_be_visible()
