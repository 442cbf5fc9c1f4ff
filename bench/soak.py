#!/usr/bin/env python3
"""Helpers of bench/soak.sh (standard library only).

  prepare BASE DATA_DIR            a company-owner account and project p1 (env dev) in company
                                   acme; prints shell assignments ROOT_TOKEN, OWNER_TOKEN, BASIC
  writer BASE TOKEN LOG SECONDS THREADS PREFIX
                                   management writes until SECONDS pass or the gateway goes away;
                                   each thread cycles create -> set project and environment roles
                                   -> remove them -> delete, and logs every operation before it
                                   is sent (B) and when it is acknowledged (A) or fails (E, X)
  check LOG DATABASE BASE          after a restart: every acknowledged write is there, nothing is
                                   half-written, and surviving accounts still authenticate
"""
import base64
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse


def request(base, method, path, token=None, body=None, basic=None, form=None, timeout=10):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = {}
    data = None
    if token:
        headers["Authorization"] = "Bearer " + token
    if basic:
        headers["Authorization"] = "Basic " + basic
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body)
    if form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        data = form
    try:
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def basic_of(client_id, secret):
    return base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def grant(base, basic):
    status, body = request(base, "POST", "/api/m2m/oauth/token", basic=basic,
                           form="grant_type=client_credentials")
    if status != 200:
        raise SystemExit(f"token grant answered {status}: {body[:200]!r}")
    return json.loads(body)["access_token"]


def prepare(base, data_dir):
    creds = json.load(open(os.path.join(data_dir, "bootstrap-credentials.json")))
    root_basic = basic_of(creds["clientId"], creds["clientSecret"])
    root = grant(base, root_basic)
    status, body = request(base, "POST", "/api/companies/acme/service-accounts", token=root,
                           body={"name": "soak-owner", "tokenEndpointAuthMethod": "client_secret_basic",
                                 "role": "company-owner"})
    if status != 201:
        raise SystemExit(f"creating the owner answered {status}: {body[:200]!r}")
    owner = json.loads(body)
    owner_token = grant(base, basic_of(owner["clientId"], owner["clientSecret"]))
    status, body = request(base, "PUT", "/api/iamgate/directory/projects/p1", token=owner_token,
                           body={"companyId": "acme", "environments": ["dev"]})
    if status not in (200, 201, 204):
        raise SystemExit(f"registering p1 answered {status}: {body[:200]!r}")
    print(f"ROOT_TOKEN={root}\nOWNER_TOKEN={owner_token}\nBASIC={root_basic}")


SET = {"projectsRole": [{"projectId": "p1", "role": "developer",
                         "environmentsRole": [{"envId": "dev", "role": "maintainer"}]}]}
UNSET = {"projectsRole": [{"projectId": "p1", "role": "",
                           "environmentsRole": [{"envId": "dev", "role": ""}]}]}


def writer(base, token, log_path, seconds, threads, prefix):
    log = open(log_path, "a", buffering=1)
    lock = threading.Lock()
    deadline = time.monotonic() + float(seconds)

    def note(*fields):
        with lock:
            log.write("\t".join(str(f) for f in fields) + "\n")

    def run(t):
        n = 0
        while time.monotonic() < deadline:
            n += 1
            name = f"{prefix}-{t}-{n}"
            steps = [("create", "POST", "/api/companies/acme/service-accounts",
                      {"name": name, "tokenEndpointAuthMethod": "client_secret_basic",
                       "role": "developer"}, 201)]
            client_id = None
            for op in ["create", "set", "unset", "delete"]:
                if op == "create":
                    _, method, path, body, want = steps[0]
                else:
                    method, body, want = {"set": ("PATCH", SET, 204), "unset": ("PATCH", UNSET, 204),
                                          "delete": ("DELETE", None, 204)}[op]
                    path = f"/api/companies/acme/service-accounts/{client_id}"
                note("B", name, op)
                try:
                    status, answer = request(base, method, path, token=token, body=body)
                except OSError as e:
                    note("X", name, op, type(e).__name__)
                    return
                if status != want:
                    note("E", name, op, status, answer[:200].decode(errors="replace"))
                    return
                if op == "create":
                    created = json.loads(answer)
                    client_id = created["clientId"]
                    note("A", name, op, client_id, created["clientSecret"])
                else:
                    note("A", name, op, client_id)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def rows(database, sql):
    if database.startswith("postgres"):
        out = subprocess.run(["psql", database, "-X", "-A", "-t", "-F", "\t", "-c", sql],
                             check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines() if line]
    import sqlite3
    path = database.removeprefix("sqlite:")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        return [[str(v) for v in r] for r in c.execute(sql)]


# What each acknowledged operation leaves: (account exists, project and environment roles set).
AFTER = {"create": (True, False), "set": (True, True), "unset": (True, False), "delete": (False, False)}


def check(log_path, database, base):
    ops = {}  # name -> list of [op, state] with state B (sent), A (acknowledged), E, X
    ids, secrets, errors = {}, {}, []
    for line in open(log_path):
        f = line.rstrip("\n").split("\t")
        kind, name, op = f[0], f[1], f[2]
        if kind == "B":
            ops.setdefault(name, []).append([op, "B"])
        else:
            ops[name][-1][1] = kind
        if kind == "A" and op == "create":
            ids[name], secrets[name] = f[3], f[4]
        if kind == "E":
            errors.append(line.strip())
    accounts = {cid: name for cid, name in rows(database, "SELECT client_id, name FROM service_accounts")}
    by_name = {name: cid for cid, name in accounts.items()}
    bindings = {}
    orphans = []
    for (doc,) in rows(database, "SELECT doc FROM bindings"):
        b = json.loads(doc)
        for s in b["subjects"]:
            cid = s.removeprefix("serviceaccount:")
            if s.startswith("serviceaccount:") and cid not in accounts:
                orphans.append(b["bindingId"])
            r = b["resource"]
            bindings.setdefault(cid, {})[(r["resourceType"], r["resourceId"])] = b["roles"]
    audit = {}
    for action, target in rows(database, "SELECT action, target FROM audit_log"):
        audit.setdefault(target, set()).add(action)
    problems = [f"binding without its account: {o}" for o in orphans]
    problems += [f"write refused while the gateway was up: {e}" for e in errors]
    checked = uncertain = 0
    for name, seq in ops.items():
        acked = [op for op, state in seq if state == "A"]
        pending = [op for op, state in seq if state != "A"]
        if len(pending) > 1 or (pending and seq[-1][1] == "A"):
            problems.append(f"{name}: operations after an unacknowledged one: {seq}")
            continue
        before = AFTER[acked[-1]] if acked else (False, False)
        allowed = {before}
        if pending:
            uncertain += 1
            allowed.add(AFTER[pending[0]])
        cid = ids.get(name) or by_name.get(name)
        exists = cid is not None and cid in accounts
        b = bindings.get(cid, {}) if exists else {}
        company = b.get(("company", "acme"))
        project = b.get(("project", "p1"))
        env = b.get(("environment", "p1:dev"))
        if exists and company != ["developer"]:
            problems.append(f"{name}: account without its company role ({company})")
        if (project is None) != (env is None):
            problems.append(f"{name}: half of a role edit: project {project}, environment {env}")
        if project is not None and (project, env) != (["developer"], ["maintainer"]):
            problems.append(f"{name}: unexpected roles: project {project}, environment {env}")
        state = (exists, project is not None)
        if state not in allowed:
            problems.append(f"{name}: store holds {state}, acknowledged writes allow {sorted(allowed)}")
        if exists and "service-account.create" not in audit.get(cid, set()):
            problems.append(f"{name}: account without its audit record")
        checked += 1
    # An account is only whole if its secret still works.
    survivors = [n for n in ids if ids[n] in accounts][:20]
    for name in survivors:
        status, body = request(base, "POST", "/api/m2m/oauth/token",
                               basic=basic_of(ids[name], secrets[name]), form="grant_type=client_credentials")
        if status != 200:
            problems.append(f"{name}: its acknowledged secret answers {status}")
    print(f"checked {checked} accounts ({uncertain} with a write in flight at the kill), "
          f"{len(accounts)} in the store, {sum(len(v) for v in bindings.values())} bindings, "
          f"{len(survivors)} secrets tried")
    for p in problems:
        print("PROBLEM", p)
    return 1 if problems else 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "prepare":
        prepare(*args)
    elif cmd == "writer":
        writer(*args)
    elif cmd == "check":
        sys.exit(check(*args))
    else:
        sys.exit(__doc__)
