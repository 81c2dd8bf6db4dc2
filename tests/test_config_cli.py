"""Configuration precedence and the command line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest

from headroom.cli import make_parser
from headroom.config import OPTIONS, ConfigError, ProxyConfig, build_config
from testkit import processes
from testkit.waiting import wait_for


def test_defaults():
    config = build_config({}, environ={})
    assert config == ProxyConfig()
    assert (config.host, config.port, config.workers, config.max_body_mb) == ("127.0.0.1", 8787, 1, 32.0)
    assert config.anthropic_api_url == "https://api.anthropic.com"


def test_environment_overrides_defaults_and_flags_override_environment():
    env = {"HEADROOM_PORT": "9000", "HEADROOM_WORKERS": "3", "HEADROOM_OPTIMIZE": "false",
           "ANTHROPIC_TARGET_API_URL": "http://a.example/", "OPENAI_TARGET_API_URL": "http://o.example/v1"}
    config = build_config({}, environ=env)
    assert (config.port, config.workers, config.optimize) == (9000, 3, False)
    assert config.anthropic_api_url == "http://a.example"
    assert config.openai_api_url == "http://o.example"  # a trailing /v1 is accepted and normalised
    args = vars(make_parser().parse_args(["proxy", "--port", "9100"]))
    args.pop("command")
    assert args.pop("print_config") is False
    assert build_config(args, environ=env).port == 9100
    assert build_config(args, environ=env).workers == 3


def test_every_option_has_a_flag_and_an_env_variable():
    help_text = make_parser()._subparsers._group_actions[0].choices["proxy"].format_help()
    for option in OPTIONS:
        assert option.flag in help_text and option.env in help_text
    fields = {f for f in ProxyConfig.__dataclass_fields__}
    assert fields == {option.field for option in OPTIONS}


@pytest.mark.parametrize("env", [{"HEADROOM_PORT": "eighty"}, {"HEADROOM_WORKERS": "0"},
                                 {"HEADROOM_OPTIMIZE": "maybe"}, {"HEADROOM_LLMLINGUA_DEVICE": "tpu"}])
def test_bad_environment_values_name_the_variable(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        build_config({}, environ=env)


def test_a_refused_upstream_url_never_shows_its_secrets(capsys):
    """The one-line refusal (tests/test_config_values.py) repeats the value: without its user
    info or its query, either of which may hold a key."""
    for url in ("http://bob:hunter2@h.example/v1", "https://h.example/v1?key=AIzaSECRET", "ftp://x:hunter2@h/?k=AIzaSECRET"):
        with pytest.raises(ConfigError) as info:
            build_config({}, environ={"ANTHROPIC_TARGET_API_URL": url})
        with pytest.raises(SystemExit):
            make_parser().parse_args(["proxy", "--gemini-api-url", url])
        error = capsys.readouterr().err
        assert "h.example" in str(info.value) + error or url.startswith("ftp")
        for secret in ("hunter2", "AIzaSECRET"):
            assert secret not in str(info.value) and secret not in error


def test_upstream_urls_with_a_path_a_port_or_ipv6_are_kept():
    env = {"ANTHROPIC_TARGET_API_URL": "HTTPS://Gateway.example:8443/anthropic/",
           "OPENAI_TARGET_API_URL": "http://[::1]:8080/openai/v1/", "GEMINI_TARGET_API_URL": "http://10.0.0.7"}
    config = build_config({}, environ=env)
    assert config.anthropic_api_url == "HTTPS://Gateway.example:8443/anthropic"
    assert config.openai_api_url == "http://[::1]:8080/openai"
    assert config.gemini_api_url == "http://10.0.0.7"


def test_bad_flag_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "headroom", "proxy", "--port", "x"], capture_output=True, text=True)
    assert result.returncode == 2 and "--port" in result.stderr


def _print_config(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEADROOM_")}
    return subprocess.run([sys.executable, "-m", "headroom", *args, "--print-config"], capture_output=True,
                          text=True, env={**clean, **(env or {})}, timeout=60)


def test_print_config_shows_effective_values_and_their_sources_with_secrets_masked():
    result = _print_config("proxy", "--workers", "3", "--redis-url", "redis://:hunter2@redis:6379/0",
                           env={"HEADROOM_ADMIN_TOKEN": "admin-sekrit", "HEADROOM_RPM": "42"})
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if not line.startswith("#")}
    assert set(rows) == {option.field for option in OPTIONS}
    assert rows["workers"].split()[1:] == ["3", "(flag)"]
    assert rows["rpm"].split()[1:] == ["42", "(env", "HEADROOM_RPM)"]
    assert rows["tpm"].endswith("(default)")
    assert "hunter2" not in result.stdout and "admin-sekrit" not in result.stdout
    assert "redis://:***@redis:6379/0" in rows["redis_url"] and "***" in rows["admin_token"]


@pytest.mark.parametrize("args, env, named", [
    (("proxy",), {"HEADROOM_WORKERS": "0"}, "HEADROOM_WORKERS"),
    (("proxy", "--redis-url", "memcached://x"), {}, "--redis-url"),
    (("proxy", "--model-server-url", "http://x:1"), {}, "--model-server-url"),
    (("proxy", "--budget-period", "weekly"), {}, "--budget-period"),
    (("model-server", "--port", "-1"), {}, "--port"),
])
def test_print_config_fails_on_an_invalid_configuration(args, env, named):
    result = _print_config(*args, env=env)
    assert result.returncode == 2 and named in result.stderr and result.stdout == ""


def test_model_server_print_config_masks_its_token():
    result = _print_config("model-server", "--host", "0.0.0.0", "--token", "tok-sekrit")
    assert result.returncode == 0 and "tok-sekrit" not in result.stdout
    assert re.search(r"^host\s+0\.0\.0\.0\s+\(flag\)$", result.stdout, re.M)


def test_startup_banner(start_proxy):
    proxy = start_proxy()
    assert f"listening on {proxy.url}" in proxy.output()


def test_start_up_imports_no_ml_or_tokenizer_code():
    code = (
        "import sys; from headroom.proxy.factory import create_app; create_app();"
        "heavy = {'torch', 'transformers', 'llmlingua', 'onnxruntime', 'tiktoken'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_several_workers_serve_requests(start_proxy, fresh_mock):
    proxy = start_proxy("--workers", "2")
    for i in range(6):
        body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": f"hi {i}"}]}
        with httpx.Client() as client:  # fresh connection each time
            response = client.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": "k"})
        assert response.status_code == 200
    assert len(fresh_mock.requests()) == 6
    assert "Starting worker" in proxy.output()


@pytest.mark.parametrize(("command", "marker"), [((), "options-table"), (("model-server",), "model-server-options")])
def test_readme_option_tables_are_current(command, marker):
    from testkit import ROOT

    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "options_table.py"), *command], capture_output=True, text=True,
        check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.strip()
    readme = (ROOT / "README.md").read_text()
    table = readme.split(f"<!-- {marker}:start -->")[1].split(f"<!-- {marker}:end -->")[0].strip()
    assert table == generated, f"README table is stale: run python scripts/options_table.py {' '.join(command)}"


def test_a_crashed_worker_is_replaced(start_proxy, fresh_mock):
    proxy = start_proxy("--workers", "2")
    before = wait_for(lambda: len(found := processes.live_workers(proxy.output())) >= 2 and found, timeout=15,
                      interval=0.1, what="two live workers")
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = wait_for(lambda: len(found := processes.live_workers(proxy.output())) == 2 and victim not in found
                     and found, timeout=15, interval=0.1, what="the killed worker replaced")
    assert "died with exit code" in proxy.output()
    assert len(after) == 2 and victim not in after
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(10):
        with httpx.Client() as client:
            assert client.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": "k"}).status_code == 200
