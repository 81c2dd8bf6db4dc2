"""The Kubernetes manifests (deploy/kubernetes), docker-compose.yml and the Prometheus
configurations: well-formed, consistent with each other, and every Headroom command in them
accepted by the real CLI with the environment its container gets.

``headroom proxy ... --print-config`` / ``headroom model-server ... --print-config`` print
the effective configuration and exit 0, or say what is wrong and exit 2: each container's
command runs that way, with its ConfigMap/Secret (Kubernetes) or ``environment``
(compose) applied, so a typo in a flag or a value fails here, not at deploy time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest
import yaml

from headroom.config import MODEL_SERVER_OPTIONS, OPTIONS
from testkit import ROOT
from testkit.prometheus import REQUIRE_ENV as REQUIRE_PROMETHEUS_ENV

K8S = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIGS = sorted((ROOT / "deploy" / "prometheus").glob("*.yml"))
PLACEHOLDER = "CHANGE-ME"


def documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    found.append((path.name, doc))
    return found


def resources(kind: str | None = None) -> list[dict]:
    return [doc for name, doc in documents()
            if name != "kustomization.yaml" and (kind is None or doc.get("kind") == kind)]


def by_name(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in resources(kind)}


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# -- well-formed ---------------------------------------------------------------------------


def test_every_manifest_is_well_formed_and_named():
    docs = documents()
    assert {name for name, _ in docs} >= {"proxy.yaml", "redis.yaml", "model-server.yaml", "configmap.yaml",
                                          "secret.yaml", "kustomization.yaml"}
    seen = set()
    for name, doc in docs:
        assert isinstance(doc, dict), f"{name}: a document that is not a mapping"
        assert doc.get("apiVersion") and doc.get("kind"), f"{name}: apiVersion and kind are required"
        if doc["kind"] == "Kustomization":
            continue
        metadata = doc.get("metadata") or {}
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", metadata.get("name", "")), f"{name}: metadata.name"
        key = (doc["kind"], metadata["name"])
        assert key not in seen, f"{name}: {key} defined twice"
        seen.add(key)
    kinds = {kind for kind, _ in seen}
    assert kinds >= {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"}


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_api_versions_are_the_stable_ones():
    expected = {"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
                "PodDisruptionBudget": "policy/v1"}
    for doc in resources():
        assert doc["apiVersion"] == expected[doc["kind"]], (doc["kind"], doc["metadata"]["name"])


def test_secret_values_are_clearly_marked_placeholders():
    for secret in resources("Secret"):
        values = {**secret.get("stringData", {}), **secret.get("data", {})}
        assert set(values) == {"HEADROOM_ADMIN_TOKEN", "HEADROOM_STATE_SECRET", "HEADROOM_MODEL_SERVER_TOKEN"}
        for key, value in values.items():
            assert str(value).startswith(PLACEHOLDER), f"{key}: not an obvious placeholder: {value!r}"


# -- workloads -----------------------------------------------------------------------------


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def container_ports(deployment: dict) -> dict[str | int, int]:
    """Every way a probe or Service may name a container port (by name or number) -> the number."""
    ports: dict[str | int, int] = {}
    for container in pod_spec(deployment)["containers"]:
        for port in container.get("ports", []):
            ports[port["containerPort"]] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def test_deployments_select_their_own_pods_and_run_as_non_root():
    for deployment in resources("Deployment"):
        name = deployment["metadata"]["name"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector and selector.items() <= labels.items(), f"{name}: selector does not match the template"
        spec = pod_spec(deployment)
        security = spec.get("securityContext", {})
        assert security.get("runAsNonRoot") is True and security.get("runAsUser", 0) != 0, name
        for container in spec["containers"]:
            assert container.get("image"), name
            resources_ = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources_.get("requests", {})), f"{name}: resource requests"
            assert {"cpu", "memory"} <= set(resources_.get("limits", {})), f"{name}: resource limits"
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, name
            assert context.get("capabilities", {}).get("drop") == ["ALL"], name
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{name}: no {probe}"
                action = container[probe].get("httpGet") or container[probe].get("tcpSocket")
                if action:
                    assert action["port"] in container_ports(deployment), f"{name}: {probe} on an unknown port"
            mounts = {mount["name"] for mount in container.get("volumeMounts", [])}
            assert mounts <= {volume["name"] for volume in spec.get("volumes", [])}, name
    # Containers running Headroom use the image's numeric user (the image's USER 10001).
    for deployment in headroom_deployments():
        assert pod_spec(deployment)["securityContext"]["runAsUser"] == 10001


def headroom_deployments() -> list[dict]:
    return [d for d in resources("Deployment") if pod_spec(d)["containers"][0].get("command", [""])[0] == "headroom"]


def test_the_proxy_is_probed_on_livez_and_readyz_at_its_own_port():
    proxies = [d for d in headroom_deployments() if pod_spec(d)["containers"][0]["command"][1] == "proxy"]
    assert len(proxies) == 1
    deployment = proxies[0]
    container = pod_spec(deployment)["containers"][0]
    ports = container_ports(deployment)
    effective = print_config(kubernetes_commands()[deployment["metadata"]["name"]])
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert ports[check["port"]] == int(effective["port"]), f"{probe} is not on the port the proxy listens on"
    assert deployment["spec"]["replicas"] >= 2
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert int(annotations["prometheus.io/port"]) == int(effective["port"])
    assert annotations.get("prometheus.io/path") == "/metrics"


def test_services_reach_pods_of_a_deployment_on_a_declared_port():
    deployments = resources("Deployment")
    for service in resources("Service"):
        selector = service["spec"]["selector"]
        targets = [d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, f"Service {service['metadata']['name']} selects {len(targets)} Deployments"
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in container_ports(targets[0]), service["metadata"]["name"]


def test_the_disruption_budget_covers_the_proxy_deployment():
    budgets = resources("PodDisruptionBudget")
    assert len(budgets) == 1
    selector = budgets[0]["spec"]["selector"]["matchLabels"]
    matching = [d for d in resources("Deployment")
                if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert [d["metadata"]["name"] for d in matching] == ["headroom"]
    assert budgets[0]["spec"]["minAvailable"] < matching[0]["spec"]["replicas"], "a drain could never proceed"


def test_every_configmap_and_secret_reference_resolves():
    config_maps, secrets = by_name("ConfigMap"), by_name("Secret")
    for deployment in resources("Deployment"):
        for container in pod_spec(deployment)["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    secret = secrets[ref["secretKeyRef"]["name"]]
                    assert ref["secretKeyRef"]["key"] in secret.get("stringData", {}) | secret.get("data", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["key"] in config_maps[ref["configMapKeyRef"]["name"]]["data"]


# -- the commands, through the real CLI ----------------------------------------------------


@dataclass
class Command:
    where: str
    argv: list[str]
    env: dict[str, str]


def container_env(container: dict) -> dict[str, str]:
    """What Kubernetes gives the container: envFrom first, then env (which wins)."""
    config_maps, secrets = by_name("ConfigMap"), by_name("Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]].get("data", {}))
        if "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]].get("stringData", {}))
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        elif "secretKeyRef" in variable.get("valueFrom", {}):
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secrets[ref["name"]]["stringData"][ref["key"]]
        elif "configMapKeyRef" in variable.get("valueFrom", {}):
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = config_maps[ref["name"]]["data"][ref["key"]]
    return env


def kubernetes_commands() -> dict[str, Command]:
    found = {}
    for deployment in resources("Deployment"):
        for container in pod_spec(deployment)["containers"]:
            argv = [*container.get("command", []), *container.get("args", [])]
            if argv and argv[0] == "headroom":
                name = deployment["metadata"]["name"]
                found[name] = Command(f"deploy/kubernetes Deployment {name}", argv, container_env(container))
    return found


_INTERPOLATION = re.compile(r"\$(?:\$|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $VAR, $$."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3) or ""
        value = environ.get(name)
        if (operator in (":-", ":?") and not value) or (operator in ("-", "?") and value is None):
            if operator.endswith("?"):
                raise AssertionError(f"docker-compose.yml requires {name}: {argument}")
            return argument
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def compose_commands(environ: dict[str, str] | None = None) -> dict[str, Command]:
    """The compose services that run a headroom command, with their environment, as `docker compose`
    would interpolate them with ``environ`` (default: nothing set, so the file's placeholders apply)."""
    document = yaml.safe_load(interpolate(COMPOSE.read_text(), environ or {}))
    found = {}
    for name, service in document["services"].items():
        argv = service.get("command") or []
        if argv[:1] != ["headroom"]:
            continue
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        found[name] = Command(f"docker-compose.yml service {name}", [str(a) for a in argv],
                              {k: "" if v is None else str(v) for k, v in env.items()})
    return found


def all_commands() -> list[Command]:
    return [*kubernetes_commands().values(), *compose_commands().values()]


def clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any Headroom setting, plus the container's."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("HEADROOM_") and not k.endswith("_TARGET_API_URL") and k != "PROMETHEUS_MULTIPROC_DIR"}
    return {**base, **extra}


def run_print_config(command: Command, **override: str) -> subprocess.CompletedProcess:
    assert command.argv[0] == "headroom" and command.argv[1] in ("proxy", "model-server"), command
    return subprocess.run([sys.executable, "-m", "headroom.cli", *command.argv[1:], "--print-config"],
                          env=clean_environ({**command.env, **override}), capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


_LINE = re.compile(r"^(\w+)\s+(.*?)\s+\((flag|default|env [A-Z0-9_]+)\)$")


def print_config(command: Command) -> dict[str, str]:
    """``{field: value}`` of the effective configuration, plus ``{field + ':source': source}``."""
    result = run_print_config(command)
    assert result.returncode == 0, f"{command.where}: {' '.join(command.argv)} rejected:\n{result.stderr}"
    effective = {}
    for line in result.stdout.splitlines():
        match = _LINE.match(line.strip())
        if match:
            effective[match.group(1)] = match.group(2)
            effective[f"{match.group(1)}:source"] = match.group(3)
    assert effective, f"no configuration lines in:\n{result.stdout}"
    return effective


def test_there_are_headroom_commands_to_check():
    commands = all_commands()
    kinds = sorted((c.where.split()[0], c.argv[1]) for c in commands)
    assert kinds == [("deploy/kubernetes", "model-server"), ("deploy/kubernetes", "proxy"),
                     ("docker-compose.yml", "model-server"), ("docker-compose.yml", "proxy")]


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: c.where)
def test_every_headroom_command_is_accepted_with_its_environment(command):
    effective = print_config(command)
    options = OPTIONS if command.argv[1] == "proxy" else MODEL_SERVER_OPTIONS
    by_env = {option.env: option for option in options}
    for key, value in command.env.items():
        if not (key.startswith("HEADROOM_") or key.endswith("_TARGET_API_URL")):
            continue
        assert key in by_env, f"{command.where}: {key} is not a setting of `headroom {command.argv[1]}`"
        field = by_env[key].field
        if value and effective[f"{field}:source"] != "flag":
            assert effective[f"{field}:source"] == f"env {key}", f"{command.where}: {key} was not used"
    for option in options:
        if option.secret and effective[option.field] != "-":
            assert effective[option.field].startswith("***"), f"{option.field} shown unmasked"
    assert effective["host"] == "0.0.0.0", "in a container the server must listen beyond loopback"
    if command.argv[1] == "proxy":
        assert effective["redis_url"].split("://")[0] in ("redis", "rediss", "redis+sentinel", "rediss+sentinel"), (
            "replicas and workers must share a Redis")
        assert effective["admin_token"] == "*** (set)", "/metrics and /stats must be guarded"
        assert effective["llmlingua"] == "true" and effective["model_server_url"].startswith("tcp://")
        assert effective["model_server_token"] == "*** (set)"
        assert int(effective["workers"]) > 1
    else:
        assert effective["token"] == "*** (set)", "a model server beyond loopback needs its token"


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: c.where)
def test_a_broken_setting_is_refused(command):
    if command.argv[1] == "proxy":
        result = run_print_config(command, HEADROOM_WORKERS="0")
        assert result.returncode == 2 and "HEADROOM_WORKERS" in result.stderr, result
        result = run_print_config(command, HEADROOM_REDIS_URL="http://not-redis")
        assert result.returncode == 2 and "redis" in result.stderr.lower(), result
    else:
        result = run_print_config(command, HEADROOM_MODEL_SERVER_MAX_QUEUE_WINDOWS="0")
        assert result.returncode == 2 and "HEADROOM_MODEL_SERVER_MAX_QUEUE_WINDOWS" in result.stderr, result
    broken = Command(command.where, [*command.argv, "--workers-typo", "2"], command.env)
    assert run_print_config(broken).returncode == 2


def test_proxies_point_at_the_services_that_exist():
    """The URLs in the proxy's configuration name a Service (Kubernetes) or service (compose) and its port."""
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in resources("Service")}
    proxy = print_config(kubernetes_commands()["headroom"])
    model = print_config(kubernetes_commands()["headroom-model-server"])
    assert re.fullmatch(r"redis://headroom-redis:6379/\d+", proxy["redis_url"])
    assert 6379 in services["headroom-redis"]
    host, port = proxy["model_server_url"].removeprefix("tcp://").split(":")
    assert int(port) in services[host] and int(port) == int(model["port"])

    document = compose()
    proxy = print_config(compose_commands()["headroom"])
    model = print_config(compose_commands()["model-server"])
    assert proxy["redis_url"].startswith("redis://redis:6379/") and "redis" in document["services"]
    host, port = proxy["model_server_url"].removeprefix("tcp://").split(":")
    assert host == "model-server" and int(port) == int(model["port"])


def test_both_sides_of_the_model_server_share_one_token():
    k8s = kubernetes_commands()
    assert k8s["headroom"].env["HEADROOM_MODEL_SERVER_TOKEN"] == k8s["headroom-model-server"].env[
        "HEADROOM_MODEL_SERVER_TOKEN"]
    given = {"HEADROOM_MODEL_SERVER_TOKEN": "from-the-operator", "HEADROOM_ADMIN_TOKEN": "admin-from-operator"}
    compose_ = compose_commands(given)
    assert compose_["headroom"].env["HEADROOM_MODEL_SERVER_TOKEN"] == "from-the-operator"
    assert compose_["model-server"].env["HEADROOM_MODEL_SERVER_TOKEN"] == "from-the-operator"
    assert compose_["headroom"].env["HEADROOM_ADMIN_TOKEN"] == "admin-from-operator"


# -- compose -------------------------------------------------------------------------------


def test_compose_starts_the_whole_stack_from_this_repository():
    document = yaml.safe_load(interpolate(COMPOSE.read_text(), {}))
    services = document["services"]
    assert set(services) == {"headroom", "redis", "model-server", "prometheus", "grafana"}
    dockerfile_stages = set(re.findall(r"^FROM \S+ AS (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    for name in ("headroom", "model-server"):
        assert services[name]["build"]["target"] in dockerfile_stages
    assert services["model-server"]["build"]["target"] == "llmlingua"
    assert services["headroom"]["build"]["target"] == "proxy"
    # Files mounted from the repository exist.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{source} is mounted but missing"
    assert any(v.startswith("./deploy/grafana/dashboards:") for v in services["grafana"]["volumes"])
    assert "3000:3000" in services["grafana"]["ports"] and "8787:8787" in services["headroom"]["ports"]


def test_compose_prometheus_scrapes_the_proxy_with_the_admin_token():
    document = yaml.safe_load(interpolate(COMPOSE.read_text(), {"HEADROOM_ADMIN_TOKEN": "the-token"}))
    prometheus = document["services"]["prometheus"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "headroom")
    assert job["metrics_path"] == "/metrics"
    proxy = print_config(compose_commands()["headroom"])
    assert job["static_configs"][0]["targets"] == [f"headroom:{proxy['port']}"]
    token_file = job["authorization"]["credentials_file"]
    # The entrypoint writes the (interpolated) admin token to exactly that file, then starts Prometheus.
    entrypoint = " ".join(prometheus["entrypoint"])
    assert f"> {token_file}" in entrypoint and "exec /bin/prometheus" in entrypoint
    assert prometheus["environment"]["HEADROOM_ADMIN_TOKEN"] == "the-token"
    assert document["services"]["headroom"]["environment"]["HEADROOM_ADMIN_TOKEN"] == "the-token"
    assert "$HEADROOM_ADMIN_TOKEN" in entrypoint, "compose's $$ must reach the shell as one $"


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard():
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(d["type"], d["url"]) for d in datasources] == [("prometheus", "http://prometheus:9090")]
    providers = yaml.safe_load((provisioning / "dashboards" / "headroom.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert (ROOT / "deploy" / "grafana" / "dashboards" / "headroom.json").is_file()


# -- Prometheus configurations -------------------------------------------------------------


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        if os.environ.get(REQUIRE_PROMETHEUS_ENV):
            pytest.fail(f"{REQUIRE_PROMETHEUS_ENV} is set but promtool (package prometheus) is not installed")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return binary


@pytest.mark.parametrize("path", PROMETHEUS_CONFIGS, ids=lambda p: p.name)
def test_prometheus_configurations_pass_promtool(path, tmp_path):
    binary = promtool()
    config = yaml.safe_load(path.read_text())
    token = tmp_path / "token"
    token.write_text("placeholder")
    for job in config["scrape_configs"]:
        if "credentials_file" in job.get("authorization", {}):  # promtool insists the file exists
            job["authorization"]["credentials_file"] = str(token)
    checked = tmp_path / path.name
    checked.write_text(yaml.safe_dump(config))
    result = subprocess.run([binary, "check", "config", str(checked)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "field kubernetes_sd_configs not found" in result.stdout + result.stderr:
        # Debian's Prometheus is built without Kubernetes discovery: check the rest with static targets.
        for job in config["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["127.0.0.1:8787"]}]
        checked.write_text(yaml.safe_dump(config))
        result = subprocess.run([binary, "check", "config", str(checked)], capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
