# Headroom container images.
#
#   docker build -t headroom .                                  # the proxy (default target, last stage)
#   docker build --target llmlingua -t headroom:llmlingua .     # + PyTorch (CPU), transformers, ONNX Runtime
#   docker run -p 8787:8787 -e HEADROOM_ADMIN_TOKEN=... headroom
#
# Configure with HEADROOM_* environment variables (see the README's options table). Both targets run as the
# unprivileged user 10001 and listen on 0.0.0.0:$HEADROOM_PORT (default 8787).
#
# The llmlingua target installs PyTorch's CPU build from TORCH_INDEX_URL before anything else can ask for torch:
# PyPI's default torch is a multi-GB CUDA build. Point --build-arg TORCH_INDEX_URL at a mirror (a PEP 503 index
# holding the torch==TORCH_VERSION CPU wheel) where download.pytorch.org cannot be reached.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# redis-server: `--workers N` without --redis-url starts a private one for the workers to share.
# Not version-pinned on purpose (DL3008): Debian replaces a package version on every security update and drops
# the old one from its mirrors, so a pinned version would break future builds instead of making them repeatable.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv "$VIRTUAL_ENV" \
    && groupadd --system --gid 10001 headroom \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/headroom \
       --shell /usr/sbin/nologin headroom
WORKDIR /build

# The dependency lists, read from pyproject.toml alone: the layers that install them are rebuilt only when
# the lists change, never for a change of the code.
FROM base AS requirements
COPY pyproject.toml ./
RUN mkdir /requirements && python -c "import tomllib; \
project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
open('/requirements/proxy.txt', 'w').write('\n'.join(project['dependencies']) + '\n'); \
open('/requirements/llmlingua.txt', 'w').write('\n'.join(project['optional-dependencies']['llmlingua']) + '\n')"

# Headroom itself, as a wheel (no dependencies).
FROM base AS wheel
COPY pyproject.toml README.md ./
COPY headroom ./headroom
RUN pip wheel --no-deps --wheel-dir /wheels .

# The proxy's dependencies: one layer both targets share.
FROM base AS deps
COPY --from=requirements /requirements /requirements
RUN pip install --requirement /requirements/proxy.txt && pip check

# The proxy plus LLMLingua-2: for `headroom model-server`, or a proxy that runs its own model server.
FROM deps AS llmlingua
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
# torch alone and first, from the CPU index; the constraint then keeps that exact build (PyPI has no "+cpu"
# version, so nothing below can swap in a CUDA wheel), while torch's own dependencies come from PyPI.
RUN pip install --index-url "$TORCH_INDEX_URL" --no-deps "torch==${TORCH_VERSION}" \
    && python -c "from importlib.metadata import version; print('torch==' + version('torch'))" \
       > /requirements/torch.txt
RUN pip install --constraint /requirements/torch.txt --requirement /requirements/llmlingua.txt \
       "torch==${TORCH_VERSION}" \
    && pip check
COPY --from=wheel /wheels /wheels
RUN pip install --no-deps /wheels/*.whl
USER 10001:10001
WORKDIR /home/headroom
EXPOSE 8787 8788
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HEADROOM_PORT', '8787'), timeout=4)"]
CMD ["headroom", "proxy", "--host", "0.0.0.0"]

# The proxy (default target): small, starts in about a second.
FROM deps AS proxy
COPY --from=wheel /wheels /wheels
RUN pip install --no-deps /wheels/*.whl
USER 10001:10001
WORKDIR /home/headroom
EXPOSE 8787
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HEADROOM_PORT', '8787'), timeout=4)"]
CMD ["headroom", "proxy", "--host", "0.0.0.0"]
