# One image for every koe process; docker-compose.yml's `command` chooses which
# (gunicorn <service>.wsgi:app, python -m <service>.<loop>, the one-shot jobs).
# Both stages use the same pinned base, so the venv's interpreter path matches.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, exactly the versions the tests ran with (constraints.txt's pins,
# every one, transitively, with PyPI's hashes of their files): a change to koe's code
# leaves this layer cached, so a rebuild downloads nothing, and a file that is not the
# one PyPI published stops the build. Every dependency ships a binary wheel: no compiler.
COPY deploy/image-requirements.txt deploy/build-requirements.txt ./
RUN python -m venv /opt/koe \
 && /opt/koe/bin/pip install --no-deps --only-binary=:all: --require-hashes -r image-requirements.txt
# The build backend pinned and hashed too (not whatever setuptools PyPI has that day);
# koe's own packages build against it and go into the venv without touching the
# dependencies, and `pip check` proves the pinned set complete.
RUN python -m pip install --no-deps --require-hashes -r build-requirements.txt
COPY libs/ libs/
COPY services/ services/
RUN python -m pip wheel --no-build-isolation --no-deps --wheel-dir /wheels \
        ./libs/koe_kit ./libs/koe_directory ./libs/koe_contract \
        ./services/feedback ./services/aggregator ./services/notifier \
 && /opt/koe/bin/pip install --no-deps --no-index /wheels/*.whl \
 && /opt/koe/bin/pip check

FROM ${PYTHON_IMAGE}
# A numeric USER: Kubernetes' runAsNonRoot and hosts without this passwd entry can tell
# it is not root.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin koe
COPY --from=builder /opt/koe /opt/koe
WORKDIR /app
# The event contract and the example divisions; mount your own divisions.yaml over it.
COPY schemas/ schemas/
COPY divisions.yaml ./
ENV PATH=/opt/koe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KOE_SCHEMAS_DIR=/app/schemas
USER 10001:10001
# No default process: the compose file names one per service.
CMD ["python", "-c", "print('koe: choose a process, see docs/operations.md'); raise SystemExit(2)"]
