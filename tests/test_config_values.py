"""Bad configuration is refused with one line naming the setting, never a traceback, never accepted.

The table runs over every option of ``headroom proxy`` and ``headroom model-server``, as a flag and
as its environment variable, through the real command line with ``--print-config`` (so no server
starts). The listening address is checked by real launches: a port held by the test, a host that
does not resolve, an address that is not on this machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from headroom import cli
from headroom.config import MODEL_SERVER_OPTIONS, OPTIONS, ConfigError, Number, Option, from_env, upstream_url
from headroom.preflight import check_listen, listen_error
from testkit import ROOT

COMMANDS = (("proxy", OPTIONS), ("model-server", MODEL_SERVER_OPTIONS))
GARBAGE = ("nan", "NaN", "inf", "-inf", "infinity", "1e999", "x", "", "0x10")


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(number)


def _bad_values(option: Option) -> list[str]:
    """What must be refused for this option: never-numbers, and just outside its range."""
    if option.choices:
        return ["bogus", option.choices[0].upper() + "x"]
    if option.parse is upstream_url:
        return ["ftp://h.example", "h.example", "http://u:p@h.example", "https://h.example/v1?x=1",
                "http://h.example:99999", "https://", "http://[::1"]
    number = option.parse
    assert isinstance(number, Number), f"{option.flag}: a numeric option must parse with config.Number"
    values = [v for v in GARBAGE if v != ""] + ["-1", _plain(number.high * 2 + 1)]
    values.append(_plain(number.low) if number.above else _plain(number.low - (1 if number.kind is int else 0.0005)))
    if number.kind is int:
        values += ["1.5", "1e3", _plain(number.high + 1)]
    else:
        values.append(repr(number.high * 1.0001))
    return values


def _checked(options: tuple[Option, ...]) -> list[Option]:
    """Options with a value to check: numbers, choices and upstream URLs (free text and switches aside)."""
    return [o for o in options if not o.switch and (o.choices or o.parse is not str)]


CASES = [
    pytest.param(command, option, value, id=f"{command} {option.flag} {value!r}")
    for command, options in COMMANDS for option in _checked(options) for value in _bad_values(option)
]


def _main(argv: list[str], capsys, monkeypatch, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The real command line in this process (hundreds of cases: a process each would take minutes)."""
    for name in list(os.environ):
        if name.startswith("HEADROOM_"):
            monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _assert_one_line_error(code, out: str, err: str, named: str) -> None:
    assert code == 2, (out, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("headroom: error: "), err
    assert named in lines[0], err


def test_every_option_is_free_text_a_switch_a_choice_a_checked_number_or_an_upstream_url():
    """Guards the table: an option added with a bare ``int``/``float`` parser would escape it."""
    for _, options in COMMANDS:
        for option in options:
            assert (option.parse in (str, upstream_url) or option.switch
                    or isinstance(option.parse, Number)), option.flag
            assert not (option.choices and option.parse is not str), option.flag


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_a_bad_flag_value_is_one_line_naming_the_flag(command, option, value, capsys, monkeypatch):
    _assert_one_line_error(*_main([command, option.flag, value, "--print-config"], capsys, monkeypatch),
                           named=option.flag)


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_a_bad_environment_value_is_one_line_naming_the_variable(command, option, value, capsys, monkeypatch):
    _assert_one_line_error(*_main([command, "--print-config"], capsys, monkeypatch, env={option.env: value}),
                           named=option.env)


@pytest.mark.parametrize(("command", "option"), [
    pytest.param(command, option, id=f"{command} {option.flag}")
    for command, options in COMMANDS for option in options if isinstance(option.parse, Number)
])
def test_the_ends_of_each_range_are_accepted(command, option, capsys, monkeypatch):
    number = option.parse
    ends = [number.high] if number.above else [number.low, number.high]
    if number.above:
        ends.append(number.low + (1 if number.kind is int else 0.001))
    for end in ends:
        argv = [command, option.flag, _plain(end), "--print-config"]
        if command == "model-server" and option.field in ("port", "metrics_port"):
            other = "--metrics-port" if option.field == "port" else "--port"
            argv[1:1] = [other, "2" if end == 1 else "1"]  # the two ports must differ
        code, out, err = _main(argv, capsys, monkeypatch)
        assert code == 0, err
        row = next(line for line in out.splitlines() if line.split()[0] == option.field)
        assert number(row.split()[1]) == number(_plain(end)) and row.endswith("(flag)")


@pytest.mark.parametrize(("argv", "named"), [
    # The issue's reproductions, spelled out: each was a traceback or was accepted.
    (["proxy", "--port", "70000"], "--port"),
    (["proxy", "--port", "0"], "--port"),  # an ephemeral port: clients could not find the proxy
    (["proxy", "--max-body-mb", "inf"], "--max-body-mb"),
    (["proxy", "--request-timeout", "nan"], "--request-timeout"),
    (["proxy", "--shutdown-grace", "nan"], "--shutdown-grace"),
    (["proxy", "--workers", "100000"], "--workers"),
    (["proxy", "--budget-period", "weekly"], "--budget-period"),
    (["proxy", "--no-such-flag"], "--no-such-flag"),
    (["model-server", "--port", "8788", "--metrics-port", "8788"], "--metrics-port"),
])
def test_issue_reproductions_through_a_real_process(argv, named):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEADROOM_")}
    result = subprocess.run([sys.executable, "-m", "headroom", *argv, "--print-config"], capture_output=True,
                            text=True, env=clean, cwd=ROOT, timeout=60)
    _assert_one_line_error(result.returncode, result.stdout, result.stderr, named)


def test_a_secret_is_never_echoed_in_an_error():
    # Secrets are free text today; should one ever be parsed, its value must stay out of messages.
    secret = Option("admin_token", "--admin-token", "HEADROOM_X_TOKEN", "t", Number(int, 1, 2), secret=True)
    with pytest.raises(ConfigError) as caught:
        from_env({"HEADROOM_X_TOKEN": "tok-sekrit"}, (secret,))
    assert "tok-sekrit" not in str(caught.value) and "HEADROOM_X_TOKEN" in str(caught.value)


# -- the listening address, by real launches -------------------------------------------------------

@pytest.fixture
def held_port():
    """A port this test holds (listening) on 127.0.0.1, as another program would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def _launch(*argv: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEADROOM_")}
    return subprocess.run([sys.executable, "-m", "headroom", *argv], capture_output=True, text=True, env=clean,
                          cwd=ROOT, timeout=60)


def test_proxy_on_a_port_in_use(held_port):
    # --workers 2 would start a private redis-server first: the check comes before any helper.
    result = _launch("proxy", "--host", "127.0.0.1", "--port", str(held_port), "--workers", "2")
    _assert_one_line_error(result.returncode, result.stdout, result.stderr, named=f"port {held_port} is in use")
    assert "--port" in result.stderr and "listening on" not in result.stderr


@pytest.mark.parametrize(("host", "says"), [
    ("999.1.1.1", "not an address nor a name that resolves"),
    ("192.0.2.1", "not an address of this machine"),  # TEST-NET-1: binding fails, no packet is sent
])
def test_proxy_on_a_host_it_cannot_listen_on(host, says):
    result = _launch("proxy", "--host", host, "--port", "8787")
    _assert_one_line_error(result.returncode, result.stdout, result.stderr, named="--host")
    assert says in result.stderr and "0.0.0.0" in result.stderr  # the fix


@pytest.mark.parametrize("which", ["--port", "--metrics-port"])
def test_model_server_on_a_port_in_use(held_port, which):
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    free = other.getsockname()[1]
    other.close()
    ports = {"--port": held_port, "--metrics-port": free} if which == "--port" else {
        "--port": free, "--metrics-port": held_port}
    result = _launch("model-server", "--host", "127.0.0.1", *(str(x) for kv in ports.items() for x in kv))
    _assert_one_line_error(result.returncode, result.stdout, result.stderr, named=f"port {held_port} is in use")
    assert which in result.stderr and "loading" not in result.stderr  # refused before the model loads


def test_check_listen_leaves_the_port_free():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_listen("127.0.0.1", port)
    with socket.socket() as again:  # without SO_REUSEADDR: nothing of the check lingers
        again.bind(("127.0.0.1", port))


def test_listen_error_names_only_binding_failures(held_port):
    with socket.socket() as sock, pytest.raises(OSError) as caught:
        sock.bind(("127.0.0.1", held_port))
    error = listen_error(caught.value, "127.0.0.1", held_port)
    assert error is not None and f"port {held_port} is in use" in str(error)
    with pytest.raises(OSError) as unrelated:
        open(ROOT / "no-such-dir" / "file")
    assert listen_error(unrelated.value, "127.0.0.1", held_port) is None
