"""The compression test corpus: realistic agent tool outputs, each with a question whose answer
is one specific value in the data.

Everything is generated deterministically (fixed seeds, no clock), so the repo stays small and
every run sees the same bytes. The shapes follow what coding agents really get back: GitHub
and internal REST APIs, Prometheus-style stats, ``kubectl -o json``, pytest/tsc/npm output,
application logs, ripgrep results, Glob listings, file reads and fetched documentation; and,
in :mod:`testkit.corpus.shell_cases`, what a shell returns: logs read with ``tail``, command
tables, stack traces with repeated frames, greps over a deep tree.

Each :class:`Case` says which strings must survive (``answers``), optionally which must stay
on one line together (``same_line``: the value and what identifies its item), and whether the
answer sits deep inside the data (``deep``): then a head-and-tail truncation of the same
size would have lost it, so keeping it proves the question-aware selection works.

Run ``python -m testkit.corpus.cases DIR`` to write the cases out for inspection.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from testkit.corpus.case import Case, aligned_table, hex_digits, iso_time, login_name
from testkit.corpus.shell_cases import shell_cases

# --- 1. GitHub issues API (pretty JSON, large array of nested objects) -------------------

ISSUE_TOPICS = [
    "Cart total not updated after coupon removal", "Flaky test in payments integration suite",
    "Upgrade eslint to v9", "Dark mode toggle resets on reload", "Improve error message for invalid SKU",
    "Add retry to inventory sync job", "Search results pagination off by one", "Docs: clarify webhook signing",
    "Memory leak in image resizer worker", "Support Apple Pay on Safari 17", "Slow query on order history page",
    "Typo in onboarding email", "Migrate CI to larger runners", "Analytics events double-counted",
    "Checkout button disabled on slow networks", "Rate limiter returns 500 instead of 429",
    "Localize currency formatting for de-CH", "Remove deprecated v1 cart endpoints",
]


def _gh_user(login: str, uid: int) -> dict:
    base = f"https://api.github.com/users/{login}"
    return {
        "login": login, "id": uid, "node_id": f"MDQ6VXNlcj{uid}", "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "", "url": base, "html_url": f"https://github.com/{login}", "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}", "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs", "repos_url": f"{base}/repos", "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events", "type": "User", "user_view_type": "public", "site_admin": False,
    }


LABELS = [("bug", "d73a4a"), ("enhancement", "a2eeef"), ("checkout", "0e8a16"), ("payments", "5319e7"),
          ("tech-debt", "fbca04"), ("good first issue", "7057ff"), ("needs-triage", "ededed")]


def github_issues() -> Case:
    rng = random.Random(101)
    repo = "https://api.github.com/repos/acme/storefront"
    issues = []
    target = 57
    for k in range(100):
        number = 4400 - k
        login = login_name(rng)
        title = rng.choice(ISSUE_TOPICS)
        if k == target:
            login, title = "mkowalczyk", "Checkout websocket reconnect loop after token refresh"
        labels = [
            {"id": 1000 + i, "node_id": f"LA_kwDOA{i}", "url": f"{repo}/labels/{name.replace(' ', '%20')}",
             "name": name, "color": color, "default": name == "bug", "description": None}
            for i, (name, color) in enumerate(LABELS) if rng.random() < 0.25
        ]
        closed = rng.random() < 0.4
        issues.append({
            "url": f"{repo}/issues/{number}", "repository_url": repo,
            "labels_url": f"{repo}/issues/{number}/labels{{/name}}", "comments_url": f"{repo}/issues/{number}/comments",
            "events_url": f"{repo}/issues/{number}/events", "html_url": f"https://github.com/acme/storefront/issues/{number}",
            "id": 2900000000 + number * 17, "node_id": f"I_kwDOBx{hex_digits(rng, 8)}", "number": number, "title": title,
            "user": _gh_user(login, 10_000 + rng.randrange(900_000)), "labels": labels,
            "state": "closed" if closed else "open", "locked": False, "assignee": None, "assignees": [],
            "milestone": None, "comments": rng.randrange(0, 14), "created_at": iso_time(rng), "updated_at": iso_time(rng),
            "closed_at": iso_time(rng) if closed else None, "author_association": rng.choice(["MEMBER", "CONTRIBUTOR", "NONE"]),
            "type": None, "active_lock_reason": None, "sub_issues_summary": {"total": 0, "completed": 0, "percent_completed": 0},
            "body": f"Steps to reproduce:\n1. Open the storefront\n2. {title.lower()}\n\nExpected: works.\nActual: see logs.",
            "closed_by": None,
            "reactions": {"url": f"{repo}/issues/{number}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0,
                          "hooray": 0, "confused": 0, "heart": 0, "rocket": 0, "eyes": 0},
            "timeline_url": f"{repo}/issues/{number}/timeline", "performed_via_github_app": None,
            "state_reason": "completed" if closed else None,
        })
    return Case(
        name="github_issues_json", tool="Bash",
        tool_input={"command": "gh api 'repos/acme/storefront/issues?state=all&per_page=100'", "description": "List recent issues"},
        content=json.dumps(issues, indent=2),
        question="Who opened the issue about the websocket reconnect loop in checkout?",
        answers=("mkowalczyk",), same_line=("Checkout websocket reconnect loop after token refresh", "mkowalczyk"), deep=True,
    )


# --- 2. Orders from an internal API via an OpenAI function call (compact JSON) ------------

def orders_api() -> Case:
    rng = random.Random(202)
    orders = []
    failed = {117: "card_declined", 263: "insufficient_funds", 391: "expired_card"}
    for k in range(500):
        oid = f"ord_{hex_digits(rng, 4).upper()}{k:04d}"
        status = "paid" if rng.random() > 0.04 else "refunded"
        code = None
        if k in failed:
            status, code = "payment_failed", failed[k]
        orders.append({
            "id": oid, "object": "order", "customer": {"id": f"cus_{hex_digits(rng, 10)}", "email": f"{login_name(rng)}@example.com"},
            "amount_cents": rng.randrange(900, 48_000), "currency": "eur", "status": status, "failure_code": code,
            "items": rng.randrange(1, 6), "channel": rng.choice(["web", "web", "ios", "android"]),
            "created": 1_735_689_600 + k * 811,
        })
    target = orders[263]["id"]
    body = {"object": "list", "url": "/v1/orders", "has_more": False, "data": orders}
    return Case(
        name="orders_api_json", tool="list_orders", provider="openai",
        tool_input={"created_after": "2025-01-01", "limit": 500},
        content=json.dumps(body, separators=(",", ":")),
        question=f"Why did order {target} fail? What was the failure code?",
        answers=(target, "insufficient_funds"), same_line=(target, "insufficient_funds"), deep=True,
    )


# --- 3. Endpoint latency stats (pretty JSON; answer is a numeric outlier) -----------------

def endpoint_stats() -> Case:
    rng = random.Random(303)
    resources = ["cart", "orders", "products", "users", "search", "inventory", "payments", "shipping", "reviews", "coupons"]
    actions = ["", "/{id}", "/{id}/items", "/bulk", "/export", "/summary", "/history", "/validate", "/merge", "/preview"]
    rows = []
    for res in resources:
        for action in actions:
            for method in ("GET", "POST", "PUT"):
                p50 = round(rng.uniform(8, 60), 1)
                rows.append({
                    "service": "storefront-api", "endpoint": f"/api/v2/{res}{action}", "method": method,
                    "requests": rng.randrange(200, 90_000), "error_rate": round(rng.uniform(0, 0.004), 4),
                    "latency_ms": {"p50": p50, "p90": round(p50 * rng.uniform(1.8, 2.6), 1),
                                   "p99": round(p50 * rng.uniform(3.0, 5.5), 1)},
                    "apdex": round(rng.uniform(0.93, 0.995), 3),
                })
    spike = next(r for r in rows if r["endpoint"] == "/api/v2/cart/merge" and r["method"] == "POST")
    spike["latency_ms"]["p99"] = 8734.5
    doc = {"window": "1h", "generated_at": "2025-03-14T10:00:00Z", "endpoints": rows}
    return Case(
        name="endpoint_latency_json", tool="Bash",
        tool_input={"command": "curl -s https://apm.internal/api/v1/services/storefront-api/endpoints?window=1h | jq ."},
        content=json.dumps(doc, indent=2),
        question="Which endpoint has the p99 latency spike in the last hour?",
        answers=("8734.5",), same_line=("/api/v2/cart/merge", "8734.5"), deep=True,
    )


# --- 4. kubectl get pods -o json (nested documents, few items: lossless only) -------------

def k8s_pods() -> Case:
    rng = random.Random(404)
    apps = ["storefront-web", "storefront-api", "payments-worker", "inventory-sync", "search-indexer", "mailer"]
    items = []
    for k in range(14):
        app = apps[k % len(apps)]
        version = f"{rng.randint(1, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        if app == "payments-worker":
            version = "2.14.3"
        name = f"{app}-{hex_digits(rng, 9)}-{hex_digits(rng, 5)}"
        image = f"registry.acme.io/{app}:{version}"
        items.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "creationTimestamp": iso_time(rng, 2025, 3), "generateName": f"{app}-{hex_digits(rng, 9)}-",
                "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "storefront", "pod-template-hash": hex_digits(rng, 9)},
                "name": name, "namespace": "prod",
                "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": True, "controller": True,
                                     "kind": "ReplicaSet", "name": f"{app}-{hex_digits(rng, 9)}", "uid": f"{hex_digits(rng, 8)}-{hex_digits(rng, 4)}-{hex_digits(rng, 4)}-{hex_digits(rng, 4)}-{hex_digits(rng, 12)}"}],
                "resourceVersion": str(rng.randrange(10**7, 10**8)), "uid": f"{hex_digits(rng, 8)}-{hex_digits(rng, 4)}-{hex_digits(rng, 4)}-{hex_digits(rng, 4)}-{hex_digits(rng, 12)}",
            },
            "spec": {
                "containers": [{
                    "env": [{"name": "NODE_ENV", "value": "production"}, {"name": "LOG_LEVEL", "value": "info"},
                            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability:4317"}],
                    "image": image, "imagePullPolicy": "IfNotPresent", "name": app,
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "readinessProbe": {"failureThreshold": 3, "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                       "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1},
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "250m", "memory": "512Mi"}},
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                    "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": f"kube-api-access-{hex_digits(rng, 5)}", "readOnly": True}],
                }],
                "dnsPolicy": "ClusterFirst", "enableServiceLinks": True, "nodeName": f"ip-10-0-{rng.randint(1, 250)}-{rng.randint(1, 250)}.eu-central-1.compute.internal",
                "preemptionPolicy": "PreemptLowerPriority", "priority": 0, "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "serviceAccount": "default", "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
                "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}],
            },
            "status": {
                "conditions": [{"lastProbeTime": None, "lastTransitionTime": iso_time(rng, 2025, 3), "status": "True", "type": t}
                               for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")],
                "containerStatuses": [{"containerID": f"containerd://{hex_digits(rng, 64)}", "image": image,
                                       "imageID": f"registry.acme.io/{app}@sha256:{hex_digits(rng, 64)}", "lastState": {}, "name": app,
                                       "ready": True, "restartCount": 0, "started": True,
                                       "state": {"running": {"startedAt": iso_time(rng, 2025, 3)}}}],
                "hostIP": f"10.0.{rng.randint(1, 250)}.{rng.randint(1, 250)}", "phase": "Running",
                "podIP": f"10.1.{rng.randint(1, 250)}.{rng.randint(1, 250)}", "qosClass": "Burstable", "startTime": iso_time(rng, 2025, 3),
            },
        })
    doc = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
    return Case(
        name="k8s_pods_json", tool="Bash", tool_input={"command": "kubectl get pods -n prod -o json"},
        content=json.dumps(doc, indent=4),
        question="Which image version is the payments-worker pod running?",
        answers=("registry.acme.io/payments-worker:2.14.3",),
        notes="14 nested documents: below max_items, so only lossless compaction applies",
    )


# --- 5. pytest -v with one failure ------------------------------------------------------

def pytest_run() -> Case:
    rng = random.Random(505)
    modules = ["test_cart", "test_checkout", "test_coupons", "test_inventory", "test_orders", "test_payments",
               "test_refunds", "test_search", "test_shipping", "test_users"]
    verbs = ["creates", "updates", "deletes", "lists", "validates", "rejects", "handles", "computes", "serialises", "caches"]
    nouns = ["item", "total", "discount", "address", "currency", "token", "page", "filter", "rate", "receipt", "quantity", "tax"]
    names = []
    for mod in modules:
        for _ in range(60):
            names.append((mod, f"test_{rng.choice(verbs)}_{rng.choice(nouns)}_{rng.choice(nouns)}_{len(names)}"))
    fail_at = 437
    names[fail_at] = ("test_refunds", "test_partial_refund_rounding")
    total = len(names)
    lines = [
        "============================= test session starts ==============================",
        "platform linux -- Python 3.12.4, pytest-8.3.2, pluggy-1.5.0 -- /srv/app/.venv/bin/python",
        "cachedir: .pytest_cache", "rootdir: /srv/app", "configfile: pyproject.toml",
        "plugins: asyncio-0.23.8, cov-5.0.0, xdist-3.6.1", "asyncio: mode=Mode.AUTO", f"collecting ... collected {total} items", "",
    ]
    for k, (mod, name) in enumerate(names):
        pct = (k + 1) * 100 // total
        result = "FAILED" if k == fail_at else ("SKIPPED (requires redis)" if rng.random() < 0.01 else "PASSED")
        lines.append(f"tests/{mod}.py::{name} {result} {'[' + str(pct).rjust(3) + '%]'}")
    skipped = sum(1 for line in lines if "SKIPPED" in line)
    lines += [
        "", "=================================== FAILURES ===================================",
        "_________________________ test_partial_refund_rounding _________________________", "",
        "    def test_partial_refund_rounding():",
        "        order = make_order(total_cents=8500, currency=\"eur\")",
        "        refund = refunds.partial(order, ratio=Decimal(\"0.5\"))",
        ">       assert refund.amount_cents == 4250",
        "E       AssertionError: assert 4249 == 4250",
        "E        +  where 4249 = Refund(order_id='ord_1042', amount_cents=4249, currency='eur').amount_cents", "",
        "tests/test_refunds.py:88: AssertionError",
        "=========================== short test summary info ============================",
        "FAILED tests/test_refunds.py::test_partial_refund_rounding - AssertionError: assert 4249 == 4250",
        f"================== 1 failed, {total - 1 - skipped} passed, {skipped} skipped in 48.31s ===================",
    ]
    return Case(
        name="pytest_failure_log", tool="Bash", tool_input={"command": "pytest -v", "description": "Run the test suite"},
        content="\n".join(lines),
        question="Why is test_partial_refund_rounding failing?",
        answers=("assert 4249 == 4250", "tests/test_refunds.py:88"),
        notes="pytest prints failure details at the end, so the tail already holds the answer; "
              "what matters here is dropping 600 PASSED lines without touching the failure section",
    )


# --- 6. TypeScript / webpack build with one type error ------------------------------------

def tsc_build() -> Case:
    rng = random.Random(606)
    dirs = ["components", "pages", "hooks", "lib", "billing", "cart", "search", "utils", "api", "store"]
    lines = ["> storefront@3.8.0 build", "> tsc --noEmit && webpack --mode production", ""]
    for k in range(700):
        d = rng.choice(dirs)
        f = f"./src/{d}/{rng.choice(['index', 'types', 'hooks', 'helpers', 'view', 'model', 'format'])}{k}.ts"
        kind = rng.random()
        if kind < 0.6:
            lines.append(f"  {f} {rng.randint(1, 40)}.{rng.randint(0, 9)} KiB [built] [code generated]")
        elif kind < 0.85:
            lines.append(f"modules by path ./src/{d}/ {rng.randint(10, 400)} KiB {rng.randint(2, 40)} modules")
        else:
            lines.append(f"asset {d}.{hex_digits(rng, 8)}.js {rng.randint(1, 300)} KiB [emitted] [immutable] [minimized] (name: {d})")
    error_at = 380
    lines[error_at:error_at] = [
        "src/billing/invoice.ts(88,17): error TS2345: Argument of type 'string' is not assignable to parameter of type 'Cents'.",
    ]
    lines += ["", "webpack 5.94.0 compiled with 1 error in 21873 ms", "ERROR: \"build\" exited with 2."]
    return Case(
        name="tsc_build_log", tool="Bash", tool_input={"command": "npm run build"},
        content="\n".join(lines),
        question="Which file and line has the type error that breaks the build?",
        answers=("src/billing/invoice.ts(88,17)", "TS2345"), deep=True,
    )


# --- 7. Application server log with one failed request -----------------------------------

def app_log() -> Case:
    rng = random.Random(707)
    paths = ["/api/cart", "/api/cart/items", "/api/products", "/api/search", "/api/checkout", "/api/users/me", "/healthz"]
    lines = []
    fail_at = 1433
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    for k in range(2400):
        ts = f"2025-03-14T10:{(k // 60) % 60:02d}:{k % 60:02d}.{rng.randrange(1000):03d}Z"
        if k == fail_at:
            lines.append(f"{ts} ERROR [http] POST /api/checkout 500 1873ms trace_id={trace_id} user=u_88213 "
                         "msg=\"payment provider timeout\"")
            lines += [
                "Traceback (most recent call last):",
                "  File \"/srv/app/storefront/checkout/service.py\", line 142, in place_order",
                "    charge = await self.payments.charge(order, idempotency_key=key)",
                "  File \"/srv/app/storefront/payments/client.py\", line 77, in charge",
                "    raise ProviderTimeout(f\"provider did not answer within {self.timeout}s\")",
                "storefront.payments.errors.ProviderTimeout: provider did not answer within 1.5s",
            ]
            continue
        path = rng.choice(paths)
        method = "POST" if path in ("/api/checkout", "/api/cart/items") and rng.random() < 0.7 else "GET"
        level = "INFO "
        lines.append(f"{ts} {level}[http] {method} {path} 200 {rng.randint(2, 180)}ms trace_id={hex_digits(rng, 32)} user=u_{rng.randrange(10000, 99999)}")
        if k % 300 == 0:
            lines.append(f"{ts} INFO [pool] db connections in use: {rng.randint(3, 20)}/50")
    return Case(
        name="app_server_log", tool="Bash", tool_input={"command": "kubectl logs deploy/storefront-api -n prod --since=1h"},
        content="\n".join(lines),
        question="What is the trace id of the failed checkout request, and what went wrong?",
        answers=(trace_id, "ProviderTimeout"), same_line=("POST /api/checkout 500", trace_id), deep=True,
    )


# --- 8. npm install with ANSI colours, progress redraws, deprecations and a peer conflict --

def npm_install() -> Case:
    rng = random.Random(808)
    pkgs = ["inflight", "glob", "rimraf", "uuid", "querystring", "har-validator", "request", "w3c-hr-time", "abab",
            "domexception", "sourcemap-codec", "stable", "svgo", "core-js", "urix", "resolve-url", "source-map-resolve"]
    lines = []
    for _ in range(90):
        p = rng.choice(pkgs)
        lines.append(f"\x1b[33mnpm\x1b[39m \x1b[43;30mWARN\x1b[0m \x1b[35mdeprecated\x1b[0m {p}@{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}: "
                     "This module is not supported, and leaks memory. Do not use it.")
    progress = "".join(f"\r\x1b[K⸨{'#' * (i // 10)}{'░' * (10 - i // 10)}⸩ ⠙ idealTree: timing idealTree:#root Completed in {i * 37}ms"
                       for i in range(0, 100, 2))
    lines.append(progress)
    lines += [
        "\x1b[31mnpm\x1b[39m \x1b[41mERR!\x1b[0m code ERESOLVE",
        "\x1b[31mnpm\x1b[39m \x1b[41mERR!\x1b[0m ERESOLVE unable to resolve dependency tree",
        "\x1b[31mnpm\x1b[39m \x1b[41mERR!\x1b[0m ",
        "\x1b[31mnpm\x1b[39m \x1b[41mERR!\x1b[0m While resolving: storefront@3.8.0",
        "\x1b[31mnpm\x1b[39m \x1b[41mERR!\x1b[0m Found: react@18.3.1",
        "\x1b[31mnpm\x1b[39m \x1b[41mERR!\x1b[0m Could not resolve dependency:",
        "\x1b[31mnpm\x1b[39m \x1b[41mERR!\x1b[0m peer react@\"^16.8.0 || ^17.0.0\" from react-swipeable-views@0.14.0",
        "\x1b[31mnpm\x1b[39m \x1b[41mERR!\x1b[0m A complete log of this run can be found in: /root/.npm/_logs/2025-03-14T10_02_11_331Z-debug-0.log",
    ]
    return Case(
        name="npm_install_log", tool="Bash", tool_input={"command": "npm install"},
        content="\n".join(lines),
        question="Which package's peer dependency breaks npm install?",
        answers=("react-swipeable-views@0.14.0",),
    )


# --- 9. Grep (ripgrep content mode) over a repository ---------------------------------------

def grep_results() -> Case:
    rng = random.Random(909)
    files = [f"src/{d}/{n}.py" for d in ("net", "jobs", "payments", "inventory", "search", "api", "workers", "clients")
             for n in ("client", "retry", "tasks", "handlers", "config", "backoff", "session", "queue")]
    snippets = [
        "for attempt in range(retries):", "except RetryError as exc:", "retry_after = int(resp.headers.get(\"Retry-After\", 1))",
        "@retry(stop=stop_after_attempt(3), wait=wait_exponential())", "logger.warning(\"retrying %s (attempt %d)\", url, attempt)",
        "if attempt == retries - 1:", "    raise", "retries = settings.get(\"retries\", 3)", "def should_retry(response) -> bool:",
        "return response.status_code in RETRY_STATUSES", "RETRY_STATUSES = {429, 502, 503, 504}",
        "self.retry_policy = retry_policy or DEFAULT_RETRY_POLICY", "await asyncio.sleep(backoff.delay(attempt))",
    ]
    lines = []
    for f in files:
        for _ in range(rng.randint(3, 12)):
            lines.append(f"{f}:{rng.randint(5, 400)}:    {rng.choice(snippets)}")
    target = "src/net/config.py:27:MAX_RETRIES = 5"
    lines.insert(len(lines) // 2, target)
    lines.insert(len(lines) // 3, lines[len(lines) // 3])  # ripgrep over a symlinked dir repeats a match
    return Case(
        name="grep_results", tool="Grep", tool_input={"pattern": "retr(y|ies)|RETR", "output_mode": "content", "-n": True},
        content="\n".join(lines),
        question="Where is MAX_RETRIES defined and what is it set to?",
        answers=("src/net/config.py", "MAX_RETRIES = 5"), deep=True,
    )


# --- 10. Glob listing ------------------------------------------------------------------------

def glob_listing() -> Case:
    rng = random.Random(1010)
    areas = ["components", "pages", "hooks", "lib", "server/routes", "server/middleware", "server/services", "store", "utils", "styles"]
    words = ["Button", "Card", "Modal", "Table", "Form", "Header", "Footer", "List", "Item", "Panel", "Badge", "Tabs",
             "Price", "Cart", "Search", "User", "Order", "Review", "Auth", "Session", "Coupon", "Stock", "Image", "Filter"]
    paths = set()
    while len(paths) < 700:
        area = rng.choice(areas)
        name = rng.choice(words) + rng.choice(words) + rng.choice(["", "View", "Utils", "Helpers", "Container"])
        paths.add(f"/srv/storefront/src/{area}/{name}.ts{'x' if area in ('components', 'pages') else ''}")
    paths.add("/srv/storefront/src/server/middleware/rateLimiter.ts")
    listing = sorted(paths)
    return Case(
        name="glob_listing", tool="Glob", tool_input={"pattern": "src/**/*.{ts,tsx}"},
        content="\n".join(listing),
        question="Where is the rateLimiter middleware file?",
        answers=("/srv/storefront/src/server/middleware/", "rateLimiter.ts"), same_line=("/srv/storefront/src/server/middleware/", "rateLimiter.ts"),
    )


# --- 11. Read of a source file (must stay exact) --------------------------------------------

def source_read() -> Case:
    rng = random.Random(1111)
    src = [
        '"""Runtime settings for the storefront API, read once from the environment."""', "",
        "from __future__ import annotations", "", "import os", "from dataclasses import dataclass, field", "",
        "DEFAULT_TIMEOUT_S = 30", "DEFAULT_POOL_SIZE = 20", "",
    ]
    for k in range(40):
        name = f"{rng.choice(['cart', 'search', 'orders', 'payments', 'mail'])}_{rng.choice(['ttl', 'limit', 'workers', 'batch', 'retries'])}_{k}"
        src += ["", "@dataclass(frozen=True)", f"class {name.title().replace('_', '')}Settings:",
                f"    \"\"\"Settings for {name.replace('_', ' ')}.\"\"\"", "",
                f"    enabled: bool = os.getenv(\"{name.upper()}_ENABLED\", \"1\") == \"1\"",
                f"    value: int = int(os.getenv(\"{name.upper()}\", \"{rng.randint(1, 500)}\"))",
                "    tags: list[str] = field(default_factory=list)", "",
                "    def describe(self) -> str:", f"        return f\"{name}={{self.value}} enabled={{self.enabled}}\""]
    numbered = "\n".join(f"{i + 1:>6}\u2192{line}" for i, line in enumerate(src))
    return Case(
        name="source_file_read", tool="Read", tool_input={"file_path": "/srv/app/storefront/settings.py"},
        content=numbered, question="What is the default request timeout in settings.py?",
        answers=("DEFAULT_TIMEOUT_S = 30",), unchanged=True,
    )


# --- 12. Fetched documentation page (prose with messy whitespace) ----------------------------

def docs_page() -> Case:
    rng = random.Random(1212)
    para = ("The Acme Commerce API is organised around REST. Our API has predictable resource-oriented URLs,  "
            "accepts   form-encoded request bodies, returns JSON-encoded responses, and uses standard HTTP response "
            "codes,   authentication, and verbs.   ")
    parts = ["# Rate limits   ", "", "", ""]
    for k in range(40):
        parts += [f"## Section {k + 1}: {rng.choice(['Authentication', 'Pagination', 'Errors', 'Idempotency', 'Webhooks', 'Versioning'])}    ",
                  "", para * rng.randint(1, 3), "", "", "", "   "]
        if k == 23:
            parts += ["| Plan       |   Requests per minute   |   Burst  |", "|------------|-------------------------|----------|",
                      "| Free       |   60 requests per minute   |   10     |", "| Team       |   1,200 requests per minute   |   200    |",
                      "| Enterprise |   Custom                  |   Custom  |", "", ""]
    return Case(
        name="docs_page_prose", tool="WebFetch", tool_input={"url": "https://docs.acme.dev/api/rate-limits", "prompt": "rate limits"},
        content="\n".join(parts), question="What is the rate limit for the Team plan?",
        answers=("1,200 requests per minute",), same_line=("Team", "1,200 requests per minute"),
    )


# --- 13. kubectl get pods (aligned text table) -----------------------------------------------

def kubectl_table() -> Case:
    rng = random.Random(1313)
    apps = ["storefront-web", "storefront-api", "payments-worker", "inventory-sync", "search-indexer", "mailer",
            "recommendations", "image-resizer", "session-store", "feature-flags"]
    rows = []
    for _ in range(160):
        app = rng.choice(apps)
        rows.append([f"{app}-{hex_digits(rng, 9)}-{hex_digits(rng, 5)}", "1/1", "Running", str(rng.choice([0, 0, 0, 1])),
                     f"{rng.randint(1, 30)}d", f"10.1.{rng.randint(1, 250)}.{rng.randint(1, 250)}",
                     f"ip-10-0-{rng.randint(1, 250)}-{rng.randint(1, 250)}"])
    crash = rows[97]
    crash[0] = "recommendations-5f7d8c9b6-x2kqp"
    crash[1], crash[2], crash[3] = "0/1", "CrashLoopBackOff", "47 (3m12s ago)"
    header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    return Case(
        name="kubectl_pods_table", tool="Bash", tool_input={"command": "kubectl get pods -n prod -o wide"},
        content=aligned_table(header, rows),
        question="Which pod is failing, and how many times has it restarted?",
        answers=("recommendations-5f7d8c9b6-x2kqp", "47 (3m12s ago)"), same_line=("recommendations-5f7d8c9b6-x2kqp", "CrashLoopBackOff"), deep=True,
    )


# --- 14. Feature flag config via an OpenAI function (nested JSON object) ---------------------

def feature_flags() -> Case:
    rng = random.Random(1414)
    owners = [f"{login_name(rng)}@acme.io" for _ in range(30)]
    flags = {}
    for k in range(220):
        name = f"{rng.choice(['new', 'beta', 'legacy', 'exp'])}_{rng.choice(['checkout', 'search', 'cart', 'pricing', 'mail', 'ui'])}_{rng.choice(['flow', 'ranker', 'banner', 'widget', 'cache', 'api'])}_{k}"
        flags[name] = {
            "enabled": rng.random() < 0.6,
            "rollout": {"percentage": rng.choice([0, 5, 10, 25, 50, 100]), "segments": rng.sample(["eu", "us", "staff", "beta-testers", "mobile"], 2)},
            "owner": rng.choice(owners), "updated_at": iso_time(rng, 2025),
        }
    flags["new_checkout_flow"] = {"enabled": True, "rollout": {"percentage": 35, "segments": ["eu", "staff"]},
                                  "owner": "sarah.okafor@acme.io", "updated_at": "2025-03-12T08:41:00Z"}
    doc = {"environment": "production", "version": 1842, "flags": flags}
    return Case(
        name="feature_flags_json", tool="get_feature_flags", provider="openai", tool_input={"environment": "production"},
        content=json.dumps(doc, indent=2), question="Who owns the new_checkout_flow flag and what is its rollout?",
        answers=("sarah.okafor@acme.io",),
        notes="one nested object (no arrays of records): lossless compaction only",
    )


def all_cases() -> list[Case]:
    return [github_issues(), orders_api(), endpoint_stats(), k8s_pods(), pytest_run(), tsc_build(), app_log(),
            npm_install(), grep_results(), glob_listing(), source_read(), docs_page(), kubectl_table(), feature_flags(),
            *shell_cases()]


# --- request bodies as the clients send them -------------------------------------------------

SYSTEM = ("You are Claude Code, Anthropic's official CLI for Claude. You are an interactive CLI tool that helps "
          "users with software engineering tasks. Use the instructions below and the tools available to you.")
TOOLS = [
    {"name": "Bash", "description": "Executes a given bash command and returns its output.",
     "input_schema": {"type": "object", "properties": {"command": {"type": "string"}, "description": {"type": "string"}}, "required": ["command"]}},
    {"name": "Read", "description": "Reads a file from the local filesystem.",
     "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}},
    {"name": "Grep", "description": "A powerful search tool built on ripgrep.",
     "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}, "output_mode": {"type": "string"}}, "required": ["pattern"]}},
    {"name": "Glob", "description": "Fast file pattern matching tool.",
     "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}}, "required": ["pattern"]}},
    {"name": "WebFetch", "description": "Fetches content from a URL.",
     "input_schema": {"type": "object", "properties": {"url": {"type": "string"}, "prompt": {"type": "string"}}, "required": ["url"]}},
]


def anthropic_body(case: Case, call_id: str = "toolu_01A09q90qw90lq917835lq9") -> dict:
    """A Claude Code turn: the question, the tool call, and its result (cache marker on it)."""
    return {
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nThis is a reminder that your todo list is currently empty.\n</system-reminder>"},
                {"type": "text", "text": case.question}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": call_id, "name": case.tool, "input": case.tool_input}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call_id, "content": case.content, "is_error": False,
                 "cache_control": {"type": "ephemeral"}}]},
        ],
    }


def openai_body(case: Case, call_id: str = "call_9fK2mQ") -> dict:
    """A Chat Completions turn with a function call and its tool message."""
    return {
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "You are a helpful operations assistant for Acme's storefront."},
            {"role": "user", "content": case.question},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": case.tool, "arguments": json.dumps(case.tool_input)}}]},
            {"role": "tool", "tool_call_id": call_id, "content": case.content},
        ],
        "tools": [{"type": "function", "function": {"name": case.tool, "description": "Query the internal API.",
                                                      "parameters": {"type": "object", "properties": {}}}}],
    }


def body_for(case: Case) -> dict:
    return anthropic_body(case) if case.provider == "anthropic" else openai_body(case)


def tool_output(body: dict, provider: str) -> str:
    """The (possibly compressed) tool output inside a body built by :func:`body_for`."""
    if provider == "anthropic":
        return body["messages"][2]["content"][0]["content"]
    return body["messages"][3]["content"]


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus_out")
    out.mkdir(parents=True, exist_ok=True)
    for case in all_cases():
        (out / f"{case.name}.txt").write_text(case.content)
        print(f"{case.name:24s} {len(case.content):>8d} chars  Q: {case.question}")
