"""What operators use to prove savings: Prometheus metrics and the per-request JSON log.

Both consume the :class:`headroom.outcome.RequestOutcome` the proxy builds for every
request, after the response has gone out. prometheus-client is imported when the first
metric is created (not at import), so ``headroom --help`` stays instant.
"""
