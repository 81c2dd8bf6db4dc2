"""What operators use to prove savings: Prometheus metrics and the per-request JSON log.

Both consume the :class:`headroom.outcome.RequestOutcome` the proxy fills for every
request, after the response has gone out. The modules are imported on demand
(``headroom.observability.metrics``, ``headroom.observability.request_log``) so that the
proxy pays nothing for what the operator did not turn on.
"""
