# syntax=docker/dockerfile:1
# riskwatch as a container: a slim Python base, built in one stage and run from another
# as a non-root user, with the daemon as PID 1 so SIGTERM reaches it directly.
# The same steps are replayed in CI by deploy/verify-image-steps.sh (no Docker engine
# runs there) and the file is linted with hadolint by deploy/check-deploy-files.sh.

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/riskwatch
# The dependencies first, from pyproject.toml alone: an edit to the code or the rules
# reuses this layer and reinstalls only riskwatch itself below.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/riskwatch/bin/pip install --no-cache-dir -r requirements.txt
COPY README.md ./
COPY rules ./rules
COPY riskwatch ./riskwatch
RUN /opt/riskwatch/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 riskwatch \
 && useradd --system --uid 10001 --gid riskwatch --home-dir /var/lib/riskwatch \
      --shell /usr/sbin/nologin riskwatch \
 && mkdir -p /var/lib/riskwatch /etc/riskwatch \
 && chown riskwatch:riskwatch /var/lib/riskwatch
COPY --from=build /opt/riskwatch /opt/riskwatch
COPY rules /etc/riskwatch/rules
COPY deploy/healthcheck.py /opt/riskwatch/healthcheck.py
# Only the image's layout is set here: where its rules are, and listening on all
# interfaces (loopback, the code's default, cannot be reached from outside a container).
# Every other setting keeps the code's default, so nothing here outranks a secret file
# in /run/secrets: RISKWATCH_STATE in particular is read from there when it is given,
# and otherwise the default (sqlite:///riskwatch-state.db, relative to the working
# directory) puts the SQLite file in the state volume below. Logs are JSON lines
# because standard error is not a terminal (RISKWATCH_LOG_FORMAT=auto).
ENV PATH=/opt/riskwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RISKWATCH_RULES=/etc/riskwatch/rules \
    RISKWATCH_HTTP=0.0.0.0:9464
USER 10001:10001
WORKDIR /var/lib/riskwatch
VOLUME ["/var/lib/riskwatch"]
EXPOSE 9464
# GET /healthz where RISKWATCH_HTTP says (a -e RISKWATCH_HTTP=... moves it too)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "/opt/riskwatch/healthcheck.py"]
ENTRYPOINT ["riskwatch"]
CMD ["run"]
