# One image for every koe process; docker-compose.yml's `command` chooses which
# (gunicorn <service>.wsgi:app, python -m <service>.<loop>, the one-shot jobs).
# Both stages use the same pinned base, so the venv's interpreter path matches.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt ./
COPY libs/ libs/
COPY services/ services/
# Wheels of koe's own packages (and of their dependencies, at the versions the tests
# ran: constraints.txt) first, then a venv from them only: every dependency ships a
# binary wheel, so no compiler is needed here either, and the final stage gets the
# venv and nothing of the build.
RUN python -m pip wheel --wheel-dir /wheels --constraint constraints.txt \
        ./libs/koe_kit ./libs/koe_directory \
        ./services/feedback ./services/aggregator ./services/notifier \
 && python -m venv /opt/koe \
 && /opt/koe/bin/pip install --no-index --find-links /wheels \
        koe-kit koe-directory koe-feedback koe-aggregator koe-notifier

FROM ${PYTHON_IMAGE}
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
USER koe
# No default process: the compose file names one per service.
CMD ["python", "-c", "print('koe: choose a process, see docs/operations.md'); raise SystemExit(2)"]
