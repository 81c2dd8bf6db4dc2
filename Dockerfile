# Headroom proxy image. Build: docker build -t headroom .   Run: docker run -p 8787:8787 headroom
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# redis-server: `--workers N` without --redis-url starts a private one for the workers to share.
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY headroom ./headroom
RUN pip install .

RUN useradd --create-home --uid 10001 headroom
USER headroom
EXPOSE 8787
# Inside a container the proxy must listen on all interfaces to be reachable.
ENV HEADROOM_HOST=0.0.0.0 HEADROOM_PORT=8787
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8787/health', timeout=2)" || exit 1
CMD ["headroom", "proxy"]
