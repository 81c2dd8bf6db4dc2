"""The Grafana dashboard (deploy/grafana/dashboards/headroom.json) queries only what Headroom exports.

Every PromQL expression in the dashboard is parsed (strings, Grafana variables, ranges,
label matchers and grouping clauses told apart from metric names); each metric it names must
be a series a real proxy exports on ``/metrics`` (after one request of each provider, a
stream, a relayed upstream error and a rate-limit refusal, so the labelled series exist),
each label it matches or groups by must be a label of those series, and each function a
PromQL function. A real Prometheus then scrapes that proxy with the admin token, as the
compose file's does, and every expression must evaluate to data.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit import ROOT
from testkit.prometheus import require_prometheus, start_prometheus
from testkit.waiting import wait_for

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "headroom.json"
ADMIN = "dashboard-admin-token"

# PromQL's functions and aggregation operators (Prometheus 2.x/3.x).
FUNCTIONS = frozenset("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max clamp_min
cos cosh count_over_time days_in_month day_of_month day_of_week day_of_year deg delta deriv exp floor
histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum
double_exponential_smoothing holt_winters hour idelta increase irate label_join label_replace last_over_time ln
log10 log2 mad_over_time max_over_time min_over_time minute month pi predict_linear present_over_time
quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt
stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year
sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
""".split())
AGGREGATIONS = frozenset("sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk "
                         "limit_ratio".split())
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan", "Inf", "NaN"})
# What Grafana puts into expressions before they reach Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<matchop>=~|!~|!=|==|=)
  | (?P<punct>[(){},+\-*/%^<>@]|>=|<=)
""", re.VERBOSE)


@dataclass
class Query:
    """What one PromQL expression refers to."""

    metrics: dict[str, set[str]] = field(default_factory=dict)  # metric name -> labels in its {matchers}
    grouping: set[str] = field(default_factory=set)  # labels in by/without/on/ignoring/group_x (...)
    functions: set[str] = field(default_factory=set)


def substitute_grafana_variables(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    if re.search(r"\$\{?\w", expr):
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def tokens(expr: str) -> list[tuple[str, str]]:
    found, position = [], 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot parse {expr[position:]!r} in {expr!r}")
        if match.lastgroup != "space":
            found.append((match.lastgroup, match.group()))
        position = match.end()
    return found


def parse(expr: str) -> Query:
    """The metric names, label names and functions of a PromQL expression."""
    query = Query()
    items = tokens(substitute_grafana_variables(expr))
    i = 0
    while i < len(items):
        kind, text = items[i]
        following = items[i + 1][1] if i + 1 < len(items) else None
        if kind == "punct" and text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}: name the metric")
        if kind != "ident":
            i += 1
            continue
        if text in GROUPING:
            i += 1
            if following == "(":
                i += 1
                while items[i][1] != ")":
                    if items[i][0] == "ident":
                        query.grouping.add(items[i][1])
                    i += 1
            continue
        if following == "(" or (text in AGGREGATIONS and following in ("by", "without")):  # sum by (x) (...)
            if text not in FUNCTIONS:
                raise ValueError(f"{text}() is not a PromQL function ({expr!r})")
            query.functions.add(text)
        elif text not in KEYWORDS:
            labels = query.metrics.setdefault(text, set())
            if following == "{":
                i += 2
                while items[i][1] != "}":
                    if items[i][0] == "ident" and i + 1 < len(items) and items[i + 1][0] == "matchop":
                        labels.add(items[i][1])
                    i += 1
        i += 1
    return query


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return found


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """``(panel title, expr)`` for every query of every panel."""
    return [(panel["title"], target["expr"]) for panel in panels(dashboard) for target in panel.get("targets", [])]


def exported_series(exposition: str) -> dict[str, set[str]]:
    """Sample names on /metrics (``headroom_requests_total``, ``headroom_latency_ms_bucket`` …) -> label names."""
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def problems(dashboard: dict, series: dict[str, set[str]]) -> list[str]:
    """Everything in the dashboard's queries that the exported metrics do not back."""
    found = []
    for title, expr in expressions(dashboard):
        try:
            query = parse(expr)
        except ValueError as exc:
            found.append(f"{title!r}: {exc}")
            continue
        if not query.metrics:
            found.append(f"{title!r}: no metric in {expr!r}")
        known_labels: set[str] = set()
        for metric, matched in query.metrics.items():
            family = re.sub(r"_(bucket|sum|count|total|created)$", "", metric)
            if metric not in series:
                hint = sorted(name for name in series if name.startswith(family))
                found.append(f"{title!r}: {metric} is not exported (family {family}: {hint or 'absent'})")
                continue
            known_labels |= series[metric]
            for label in sorted(matched - series[metric]):
                found.append(f"{title!r}: {metric} has no label {label!r} ({sorted(series[metric])})")
        if not set(query.metrics) <= set(series):
            continue  # reported above; its labels are unknown
        for label in sorted(query.grouping - known_labels):
            found.append(f"{title!r}: grouping by {label!r}, which none of {sorted(query.metrics)} has")
    return found


# -- the parser itself -----------------------------------------------------------------------


def test_the_parser_tells_metrics_from_everything_else():
    query = parse('histogram_quantile(0.99, sum by (le, provider) (rate(headroom_latency_ms_bucket'
                  '{provider="anthropic", status!~"2.."}[$__rate_interval] offset 5m)))')
    assert query.metrics == {"headroom_latency_ms_bucket": {"provider", "status"}}
    assert query.grouping == {"le", "provider"}
    assert query.functions == {"histogram_quantile", "sum", "rate"}
    query = parse('100 * sum(increase(a_total[$__range])) / ignoring(x) (sum(b_total) + 1e-9) > bool 0.5 '
                  'or on(job) vector(0)')
    assert set(query.metrics) == {"a_total", "b_total"} and query.grouping == {"x", "job"}
    query = parse('sum without (model) (rate(c_total{reason=~"rpm|tpm"}[5m])) unless d')
    assert query.metrics == {"c_total": {"reason"}, "d": set()} and query.grouping == {"model"}
    with pytest.raises(ValueError, match="not a PromQL function"):
        parse("histogram_quantle(0.5, x_bucket)")
    with pytest.raises(ValueError, match="unknown Grafana variable"):
        parse("rate(x_total[$interval])")


# -- against a real proxy ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy_proxy(start_proxy, mock, lingua_model):
    """A proxy with every feature on (admin token, limits, a budget, its own LLMLingua model server,
    whose queue and batch metrics it exports), after traffic that makes every labelled series
    exist: both providers, a stream, an upstream 500 and a rate-limit refusal."""
    proxy = start_proxy("--admin-token", ADMIN, "--rpm", "1", "--budget", "1000", "--llmlingua",
                        "--llmlingua-model", str(lingua_model), "--llmlingua-device", "cpu")
    wait_for(lambda: httpx.get(f"{proxy.url}/health", timeout=5).json().get("llmlingua") == "ready", timeout=60,
             interval=0.1, what="the proxy's model server loading the tiny model")
    anthropic = {"anthropic-version": "2023-06-01"}
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "dashboard"}]}
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "dashboard"}]}

    def post(path: str, payload: dict, headers: dict) -> httpx.Response:
        return httpx.post(f"{proxy.url}{path}", json=payload, headers=headers, timeout=20)

    assert post("/v1/messages", body, {**anthropic, "x-api-key": "sk-ant-dash-1"}).status_code == 200
    streamed = post("/v1/messages", {**body, "stream": True}, {**anthropic, "x-api-key": "sk-ant-dash-2"})
    assert streamed.status_code == 200 and "message_stop" in streamed.text
    assert post("/v1/chat/completions", chat, {"authorization": "Bearer sk-dash-3"}).status_code == 200
    again = {**body, "messages": [{"role": "user", "content": "again"}]}  # not a response-cache hit
    assert post("/v1/messages", again, {**anthropic, "x-api-key": "sk-ant-dash-1"}).status_code == 429  # --rpm 1
    failed = post("/v1/messages", body, {**anthropic, "x-api-key": "sk-ant-dash-4", "x-mock-status": "500"})
    assert failed.status_code == 500
    return proxy


def scrape(proxy) -> str:
    response = httpx.get(f"{proxy.url}/metrics", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    response.raise_for_status()
    return response.text


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_every_queried_metric_and_label_is_exported(busy_proxy):
    dashboard = load_dashboard()
    assert len(expressions(dashboard)) >= 20
    assert problems(dashboard, exported_series(scrape(busy_proxy))) == []


def test_a_misspelled_metric_label_or_function_is_caught(busy_proxy):
    series = exported_series(scrape(busy_proxy))
    for expr, expected in [
        ("sum(rate(headroom_request_total[$__rate_interval]))", "headroom_request_total is not exported"),
        ("histogram_quantile(0.5, sum by (le) (rate(headroom_latency_ms[5m])))", "headroom_latency_ms is not"),
        ("sum by (stauts) (rate(headroom_requests_total[5m]))", "grouping by 'stauts'"),
        ('sum(rate(headroom_rate_limited_total{raeson="rpm"}[5m]))', "no label 'raeson'"),
        ("sum(rat(headroom_requests_total[5m]))", "rat() is not a PromQL function"),
    ]:
        dashboard = load_dashboard()
        broken = copy.deepcopy(dashboard["panels"][-1])
        broken.update(id=999, title="added", targets=[{"refId": "A", "expr": expr}])
        dashboard["panels"].append(broken)
        found = problems(dashboard, series)
        assert len(found) == 1 and expected in found[0], (expr, found)


def test_the_dashboard_is_well_formed():
    dashboard = load_dashboard()
    assert dashboard["uid"] == "headroom" and dashboard["title"] == "Headroom"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids, cells = set(), set()
    for panel in panels(dashboard):
        assert panel["id"] not in ids, f"panel id {panel['id']} twice"
        ids.add(panel["id"])
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        columns, rows = range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        area = {(x, y) for x in columns for y in rows}
        assert not area & cells, f"{panel['title']!r} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_panel_has_data_in_a_real_prometheus(busy_proxy, tmp_path):
    """Scraped with the admin token as the compose Prometheus does, every expression evaluates
    (valid PromQL, right types) and returns at least one series."""
    require_prometheus()
    prometheus = start_prometheus([busy_proxy.url.removeprefix("http://")], tmp_path, scrape_interval="1s",
                                  bearer_token=ADMIN)
    try:
        prometheus.wait_until('count_over_time(up{job="headroom"}[1m])', lambda r: bool(r) and float(
            r[0]["value"][1]) >= 3, timeout=30)
        assert prometheus.value('up{job="headroom"}') == 1.0
        empty = []
        for title, expr in expressions(load_dashboard()):
            if not prometheus.query(substitute_grafana_variables(expr)):
                empty.append(f"{title!r}: {expr}")
        assert empty == [], "panels without data:\n" + "\n".join(empty)
    finally:
        prometheus.stop()
