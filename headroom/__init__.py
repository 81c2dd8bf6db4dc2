"""Headroom: a transparent, cache-safe token-saving proxy for LLM APIs."""

__version__ = "0.1.0"
