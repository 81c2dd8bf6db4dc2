# ruff: noqa: E501  (realistic tool outputs: long lines are the data, as in cases.py)
"""Corpus cases for what coding agents get back from a shell: logs read with ``tail``,
command tables (``kubectl get pods -A``, ``ps aux``), stack traces with repeated frames and
greps over a deep tree. Deterministic like the rest of the corpus (fixed seeds, no clock).

Two of them come the way the Codex CLI sends them: ``exec_command`` with ``{"cmd": …}`` and
its ``Chunk ID … Output:`` header, and ``shell`` with an argv list; the header is an answer
of its own there, because it has to reach the upstream unchanged.
"""

from __future__ import annotations

import random

from testkit.corpus.case import Case, aligned_table, hex_digits

CODEX_HEADER = "Chunk ID: 3f9a1c\nWall time: 0.0412 seconds\nProcess exited with code 0\nOriginal token count: {tokens}\nOutput:\n"


# --- dpkg.log read with tail (a file view of a log) ------------------------------------------

def dpkg_log() -> Case:
    rng = random.Random(1515)
    packages = ["libc6", "libssl3", "openssl", "libcurl4", "curl", "libpq5", "postgresql-client-15", "python3.11",
                "libpython3.11", "tzdata", "ca-certificates", "libsystemd0", "systemd", "libudev1", "git", "git-man",
                "libxml2", "libexpat1", "vim-common", "vim-tiny", "linux-image-6.1.0-27-amd64", "libgnutls30",
                "libnghttp2-14", "libsqlite3-0", "libzstd1", "bash", "login", "passwd", "sudo", "openssh-client"]
    lines = []
    minute = 0
    for k in range(70):
        pkg = rng.choice(packages)
        old = f"{rng.randint(1, 3)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}-{rng.randint(1, 9)}"
        new = old + f"+deb12u{rng.randint(1, 4)}"
        if k == 38:
            pkg, old, new = "nginx", "1.22.1-9", "1.22.1-9+deb12u1"
        stamp = f"2026-11-01 {10 + minute // 60:02d}:{minute % 60:02d}"
        minute += 1
        entry = ["startup archives unpack", f"upgrade {pkg}:amd64 {old} {new}",
                 f"status half-configured {pkg}:amd64 {old}", f"status unpacked {pkg}:amd64 {old}",
                 f"status half-installed {pkg}:amd64 {old}", f"status unpacked {pkg}:amd64 {new}",
                 f"configure {pkg}:amd64 {new} <none>", f"status half-configured {pkg}:amd64 {new}",
                 f"status installed {pkg}:amd64 {new}"]
        for e in entry:
            lines.append(f"{stamp}:{rng.randint(0, 59):02d} {e}")
        if k % 9 == 0:
            lines.append(f"{stamp}:59 trigproc man-db:amd64 2.11.2-2 <none>")
            lines.append(f"{stamp}:59 status half-configured man-db:amd64 2.11.2-2")
            lines.append(f"{stamp}:59 status installed man-db:amd64 2.11.2-2")
    lines = lines[-400:]
    return Case(
        name="dpkg_log_tail", tool="Bash", tool_input={"command": "tail -400 /var/log/dpkg.log"},
        content="\n".join(lines),
        question="Which version of nginx did unattended-upgrades install?",
        answers=("1.22.1-9+deb12u1",), same_line=("status installed nginx:amd64", "1.22.1-9+deb12u1"), deep=True,
        notes="a shell view of a log file: compressed as a log, where a source file would stay exact",
    )


# --- syslog via the Codex CLI's exec_command (header + log) ----------------------------------

def syslog_codex() -> Case:
    rng = random.Random(1616)
    units = ["systemd[1]", "CRON[{pid}]", "sshd[{pid}]", "gunicorn[{pid}]", "nginx[{pid}]", "dockerd[812]", "containerd[640]"]
    messages = {
        "systemd[1]": ["Started session-{n}.scope - Session {n} of User deploy.", "Starting logrotate.service - Rotate log files...",
                       "logrotate.service: Deactivated successfully.", "Finished logrotate.service - Rotate log files."],
        "CRON[{pid}]": ["(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)", "(deploy) CMD (/srv/app/bin/flush-metrics)"],
        "sshd[{pid}]": ["Accepted publickey for deploy from 10.0.4.{n} port {port} ssh2: ED25519 SHA256:{key}",
                        "pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0)"],
        "gunicorn[{pid}]": ["[INFO] Booting worker with pid: {pid}", "[INFO] Handling signal: winch"],
        "nginx[{pid}]": ["10.0.4.{n} - - \"GET /healthz HTTP/1.1\" 200 2 \"-\" \"kube-probe/1.29\""],
        "dockerd[812]": ["time=\"2026-11-01T10:{n:02d}:00Z\" level=info msg=\"ignoring event\" module=libcontainerd namespace=moby"],
        "containerd[640]": ["time=\"2026-11-01T10:{n:02d}:00Z\" level=info msg=\"shim disconnected\" id={key}"],
    }
    lines = []
    for k in range(300):
        unit = rng.choice(units)
        pid = rng.randint(1000, 65000)
        text = rng.choice(messages[unit]).format(n=rng.randint(1, 59), port=rng.randint(30000, 60000), key=hex_digits(rng, 12), pid=pid)
        lines.append(f"Nov  1 10:{k // 6:02d}:{(k * 7) % 60:02d} web-1 {unit.format(pid=pid)}: {text}")
    lines[187:187] = [
        "Nov  1 10:31:12 web-1 kernel: [412345.120034] gunicorn invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0",
        "Nov  1 10:31:12 web-1 kernel: [412345.120301] Out of memory: Killed process 4242 (gunicorn) total-vm:4194304kB, anon-rss:3890112kB, file-rss:0kB, shmem-rss:0kB, UID:1001 pgtables:7680kB oom_score_adj:0",
        "Nov  1 10:31:12 web-1 systemd[1]: storefront.service: A process of this unit has been killed by the OOM killer.",
    ]
    body = "\n".join(lines)
    return Case(
        name="syslog_codex_exec", tool="exec_command", provider="openai",
        tool_input={"cmd": "tail -n 300 /var/log/syslog", "workdir": "/srv/app", "yield_time_ms": 10000},
        content=CODEX_HEADER.format(tokens=len(body) // 4) + body,
        question="Why did the gunicorn worker on web-1 die?",
        answers=("Out of memory: Killed process 4242 (gunicorn)", "Chunk ID: 3f9a1c\nWall time: 0.0412 seconds\nProcess exited with code 0"),
        deep=True, notes="Codex exec_command: the header goes upstream unchanged, the log under it is compressed",
    )


# --- kubectl get pods -A (aligned table, several namespaces) ----------------------------------

def kubectl_all_namespaces() -> Case:
    rng = random.Random(1717)
    namespaces = {"prod": ["storefront-web", "storefront-api", "checkout", "payments-api", "inventory-sync", "search-indexer"],
                  "staging": ["storefront-web", "storefront-api", "checkout", "payments-api"],
                  "kube-system": ["coredns", "kube-proxy", "aws-node", "ebs-csi-node"],
                  "observability": ["otel-collector", "prometheus-node-exporter", "loki-promtail"],
                  "ingress-nginx": ["ingress-nginx-controller"]}
    rows = []
    for _ in range(220):
        ns = rng.choice(sorted(namespaces))
        app = rng.choice(namespaces[ns])
        restarts = rng.choice(["0", "0", "0", "1 (6d ago)", "2 (13d ago)"])
        rows.append([ns, f"{app}-{hex_digits(rng, 9)}-{hex_digits(rng, 5)}", "1/1", "Running", restarts, f"{rng.randint(1, 40)}d"])
    rows.sort(key=lambda r: (r[0], r[1]))
    target = next(i for i, r in enumerate(rows) if r[0] == "prod" and r[1].startswith("payments-api"))
    rows[target][1:5] = ["payments-api-6d9f7b8c4-7xk2m", "0/1", "ImagePullBackOff", "0"]
    other = next(i for i, r in enumerate(rows) if r[0] == "staging" and r[1].startswith("checkout"))
    rows[other][2:5] = ["0/1", "CrashLoopBackOff", "212 (2m40s ago)"]
    header = ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    return Case(
        name="kubectl_pods_all_ns", tool="Bash", tool_input={"command": "kubectl get pods -A"},
        content=aligned_table(header, rows),
        question="Why isn't the payments-api pod in prod starting?",
        answers=("payments-api-6d9f7b8c4-7xk2m", "ImagePullBackOff", "CrashLoopBackOff"),
        same_line=("payments-api-6d9f7b8c4-7xk2m", "ImagePullBackOff"), deep=True,
        notes="the question's pod and the other anomaly (a staging crash loop) both survive",
    )


# --- ps aux (aligned table, numeric outlier) ----------------------------------------------------

def ps_aux() -> Case:
    rng = random.Random(1818)
    commands = ["/usr/sbin/sshd -D", "/usr/lib/systemd/systemd-journald", "/usr/sbin/cron -f", "nginx: worker process",
                "/usr/bin/containerd", "/usr/bin/dockerd -H fd://", "gunicorn: worker [storefront.wsgi:application]",
                "postgres: 15/main: autovacuum worker", "postgres: 15/main: walwriter", "[kworker/u16:2-events_unbound]",
                "[ksoftirqd/3]", "/usr/bin/python3 /usr/bin/networkd-dispatcher", "-bash", "sshd: deploy@pts/0",
                "/usr/local/bin/node_exporter", "/usr/bin/redis-server 127.0.0.1:6379"]
    users = ["root", "root", "root", "www-data", "postgres", "deploy", "redis", "nobody"]
    rows = [["USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME", "COMMAND"]]
    for k in range(260):
        cpu = rng.choice(["0.0"] * 8 + ["0.1", "0.2", "0.3", "0.5", "1.2"])
        rows.append([rng.choice(users), str(100 + k * 37 + rng.randint(0, 30)), cpu, f"{rng.uniform(0, 2.5):.1f}",
                     str(rng.randint(0, 900_000)), str(rng.randint(0, 120_000)), rng.choice(["?", "?", "pts/0"]),
                     rng.choice(["S", "Ss", "Sl", "I<", "S<", "Ssl"]), rng.choice(["Oct28", "Oct30", "Nov01", "09:12"]),
                     f"{rng.randint(0, 40)}:{rng.randint(0, 59):02d}", rng.choice(commands)])
    rows[171] = ["deploy", "48213", "187.4", "6.3", "2843112", "1036452", "?", "Rl", "10:02", "94:17",
                 "/usr/bin/python3 /opt/etl/reindex.py --full --workers 8"]
    right = {1, 2, 3, 4, 5, 9}
    widths = [max(len(r[i]) for r in rows) for i in range(10)]
    fmt = lambda r: " ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " " + r[10]  # noqa: E731
    return Case(
        name="ps_aux_table", tool="Bash", tool_input={"command": "ps aux"},
        content="\n".join(fmt(r) for r in rows),
        question="What is eating all the CPU on this box?",
        answers=("48213", "/usr/bin/python3 /opt/etl/reindex.py --full --workers 8"),
        same_line=("48213", "187.4"), deep=True,
        notes="no question term names the process: it survives as a %CPU outlier",
    )


# --- Python traceback with mutual recursion --------------------------------------------------

def python_recursion() -> Case:
    lines = [
        "2026-11-01 10:12:03,118 INFO catalog.index: rebuilding search index (full=True)",
        "2026-11-01 10:12:03,342 INFO catalog.index: 18412 categories, 240311 products",
        "Traceback (most recent call last):",
        '  File "/srv/app/manage.py", line 22, in <module>',
        "    main()",
        '  File "/srv/app/manage.py", line 18, in main',
        "    execute_from_command_line(sys.argv)",
        '  File "/srv/app/catalog/management/commands/rebuild_search_index.py", line 57, in handle',
        "    docs = [serialize_category(c) for c in roots]",
        '  File "/srv/app/catalog/management/commands/rebuild_search_index.py", line 57, in <listcomp>',
        "    docs = [serialize_category(c) for c in roots]",
    ]
    for _ in range(492):
        lines += ['  File "/srv/app/catalog/serializers.py", line 31, in serialize_category',
                  '    "children": serialize_children(category),',
                  '  File "/srv/app/catalog/serializers.py", line 44, in serialize_children',
                  "    return [serialize_category(child) for child in category.children()]",
                  '  File "/srv/app/catalog/serializers.py", line 44, in <listcomp>',
                  "    return [serialize_category(child) for child in category.children()]"]
    lines += ['  File "/srv/app/catalog/models.py", line 88, in children',
              "    return list(self._children.filter(active=True))",
              "RecursionError: maximum recursion depth exceeded while calling a Python object"]
    return Case(
        name="python_recursion_trace", tool="Bash", tool_input={"command": "python manage.py rebuild_search_index"},
        content="\n".join(lines),
        question="Why does rebuild_search_index crash?",
        answers=("RecursionError: maximum recursion depth exceeded while calling a Python object",
                 'File "/srv/app/manage.py", line 22, in <module>', 'File "/srv/app/catalog/models.py", line 88, in children',
                 "serialize_children(category)"),
        notes="the 3-frame cycle is folded to one pass and an exact count: lossless, no CCR",
    )


# --- Java service log with the same trace on every failing request ----------------------------

_JAVA_FRAMES = [
    "com.acme.storefront.checkout.PriceCalculator.total(PriceCalculator.java:88)",
    "com.acme.storefront.checkout.CheckoutService.quote(CheckoutService.java:141)",
    "com.acme.storefront.checkout.CheckoutController.quote(CheckoutController.java:57)",
    "java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)",
    "java.base/java.lang.reflect.Method.invoke(Method.java:580)",
    "org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:255)",
    "org.springframework.web.method.support.InvocableHandlerMethod.invokeForRequest(InvocableHandlerMethod.java:188)",
    "org.springframework.web.servlet.mvc.method.annotation.ServletInvocableHandlerMethod.invokeAndHandle(ServletInvocableHandlerMethod.java:118)",
    "org.springframework.web.servlet.mvc.method.annotation.RequestMappingHandlerAdapter.invokeHandlerMethod(RequestMappingHandlerAdapter.java:926)",
    "org.springframework.web.servlet.mvc.method.annotation.RequestMappingHandlerAdapter.handleInternal(RequestMappingHandlerAdapter.java:831)",
    "org.springframework.web.servlet.mvc.method.AbstractHandlerMethodAdapter.handle(AbstractHandlerMethodAdapter.java:87)",
    "org.springframework.web.servlet.DispatcherServlet.doDispatch(DispatcherServlet.java:1089)",
    "org.springframework.web.servlet.DispatcherServlet.doService(DispatcherServlet.java:979)",
    "org.springframework.web.servlet.FrameworkServlet.processRequest(FrameworkServlet.java:1014)",
    "org.springframework.web.servlet.FrameworkServlet.doPost(FrameworkServlet.java:914)",
    "jakarta.servlet.http.HttpServlet.service(HttpServlet.java:590)",
    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
    "jakarta.servlet.http.HttpServlet.service(HttpServlet.java:658)",
    "org.apache.catalina.core.ApplicationFilterChain.internalDoFilter(ApplicationFilterChain.java:195)",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:140)",
    "org.apache.tomcat.websocket.server.WsFilter.doFilter(WsFilter.java:51)",
    "org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:167)",
    "org.apache.catalina.core.StandardContextValve.invoke(StandardContextValve.java:90)",
    "org.apache.catalina.core.StandardHostValve.invoke(StandardHostValve.java:115)",
    "org.apache.catalina.connector.CoyoteAdapter.service(CoyoteAdapter.java:344)",
    "org.apache.coyote.http11.Http11Processor.service(Http11Processor.java:391)",
    "org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun(NioEndpoint.java:1736)",
    "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1144)",
    "java.base/java.lang.Thread.run(Thread.java:1583)",
]


def java_service_log() -> Case:
    rng = random.Random(1919)
    lines = []
    for k in range(260):
        ts = f"2026-11-01T10:{k // 10:02d}:{(k * 13) % 60:02d}.{rng.randrange(1000):03d}Z"
        thread = f"http-nio-8080-exec-{rng.randint(1, 40)}"
        if k % 13 == 5:
            lines.append(f"{ts} ERROR 1 --- [{thread}] c.a.s.checkout.CheckoutController : quote failed for cart {hex_digits(rng, 8)}")
            lines.append('java.lang.NullPointerException: Cannot invoke "java.math.BigDecimal.add(java.math.BigDecimal)" because "discount" is null')
            lines.extend(f"\tat {frame}" for frame in _JAVA_FRAMES)
            continue
        if k == 201:
            lines.append(f"{ts} ERROR 1 --- [{thread}] c.a.s.orders.OrderRepository : could not save order")
            lines.append("org.springframework.transaction.CannotCreateTransactionException: Could not open JPA EntityManager for transaction")
            lines.extend(f"\tat {frame}" for frame in _JAVA_FRAMES[:6])
            lines.append("Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms (total=20, active=20, idle=0, waiting=41)")
            lines.append("\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:686)")
            lines.append("\t... 41 more")
            lines.append("Caused by: org.postgresql.util.PSQLException: FATAL: remaining connection slots are reserved for roles with the SUPERUSER attribute")
            lines.append("\tat org.postgresql.core.v3.ConnectionFactoryImpl.doAuthentication(ConnectionFactoryImpl.java:693)")
            lines.append("\t... 12 more")
            continue
        path = rng.choice(["/api/cart", "/api/products", "/api/checkout/quote", "/api/search", "/actuator/health"])
        lines.append(f"{ts}  INFO 1 --- [{thread}] c.a.s.web.RequestLog : {rng.choice(['GET', 'POST'])} {path} 200 {rng.randint(3, 250)}ms")
    return Case(
        name="java_repeated_traces", tool="shell", provider="openai",
        tool_input={"command": ["bash", "-lc", "tail -n 700 /opt/storefront/logs/storefront.log"]},
        content="\n".join(lines),
        question="What is the root cause of the HikariPool connection timeout when saving orders?",
        answers=("HikariPool-1 - Connection is not available, request timed out after 30000ms",
                 "FATAL: remaining connection slots are reserved for roles with the SUPERUSER attribute",
                 'because "discount" is null', "PriceCalculator.total(PriceCalculator.java:88)"),
        deep=True, notes="the 29-frame trace logged for every failed quote keeps its first and last frame after the first time",
    )


# --- ripgrep over a deep Java tree with repeated matches ----------------------------------------

def grep_deep_tree() -> Case:
    rng = random.Random(2020)
    root = "services/storefront/src/main/java/com/acme/storefront"
    packages = ["billing", "cart", "checkout", "catalog", "inventory", "orders", "payments", "shipping", "search", "users"]
    kinds = ["Service", "Controller", "Repository", "Client", "Mapper", "Validator", "Scheduler"]
    common = ["import org.slf4j.Logger;", "import org.slf4j.LoggerFactory;",
              'log.warn("retrying after transient failure", e);', 'log.error("unexpected error", e);']
    lines = []
    for pkg in packages:
        for kind in kinds:
            cls = f"{pkg.title()}{kind}"
            path = f"{root}/{pkg}/{cls}.java"
            lines.append(f"{path}:5:{common[0]}")
            lines.append(f"{path}:6:{common[1]}")
            lines.append(f"{path}:{rng.randint(20, 30)}:    private static final Logger log = LoggerFactory.getLogger({cls}.class);")
            for _ in range(rng.randint(1, 4)):
                lines.append(f"{path}:{rng.randint(40, 400)}:            {rng.choice(common[2:])}")
            if rng.random() < 0.5:
                lines.append(f"{path}:{rng.randint(40, 400)}:        log.warn(\"{pkg} {kind.lower()} slow: {{}}ms\", elapsed);")
            if pkg == "payments" and kind == "Service":
                lines.append(f"{path}:142:            log.error(\"refund {{}} exceeds captured amount {{}}\", refundId, captured);")
    return Case(
        name="grep_deep_tree", tool="Bash", tool_input={"command": "rg -n 'LoggerFactory|log\\.(warn|error)' services/"},
        content="\n".join(lines),
        question="Where do we log that a refund exceeds the captured amount?",
        answers=(f"{root}/payments/", "PaymentsService.java",
                 'log.error("refund {} exceeds captured amount {}", refundId, captured);'),
        same_line=("142", "refund {} exceeds captured amount {}"), deep=True, notes="the directory is written once above its files; imports and shared log lines once with their locations",
    )


def shell_cases() -> list[Case]:
    return [dpkg_log(), syslog_codex(), kubectl_all_namespaces(), ps_aux(), python_recursion(), java_service_log(),
            grep_deep_tree()]
