# Headroom proxy image. Build: docker build -t headroom .   Run: docker run -p 8787:8787 headroom
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# redis-server: `--workers N` without --redis-url starts a private one for the workers to share.
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, in a layer of their own: only pyproject.toml decides it, so a code change
# rebuilds from the COPY of the code below, not from here. (An empty package stands in for the code.)
COPY pyproject.toml README.md ./
RUN mkdir headroom && touch headroom/__init__.py \
    && pip install . && pip uninstall -y headroom-ai && rm -rf headroom build

COPY headroom ./headroom
RUN pip install --no-deps .

RUN useradd --create-home --uid 10001 headroom
USER headroom
EXPOSE 8787
# Inside a container the proxy must listen on all interfaces to be reachable.
ENV HEADROOM_HOST=0.0.0.0 HEADROOM_PORT=8787
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8787/health', timeout=2)" || exit 1
CMD ["headroom", "proxy"]
