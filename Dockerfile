# syntax=docker/dockerfile:1
# riskwatch as a container: a slim Python base, built in one stage and run from another
# as a non-root user, with the daemon as PID 1 so SIGTERM reaches it directly.
# The same install steps are checked in CI by deploy/verify-image-steps.sh (no Docker
# engine runs there).

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/riskwatch
COPY pyproject.toml README.md ./
COPY riskwatch ./riskwatch
COPY rules ./rules
RUN /opt/riskwatch/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/riskwatch/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 riskwatch \
 && useradd --system --uid 10001 --gid riskwatch --home-dir /var/lib/riskwatch \
      --shell /usr/sbin/nologin riskwatch \
 && mkdir -p /var/lib/riskwatch /etc/riskwatch \
 && chown riskwatch:riskwatch /var/lib/riskwatch
COPY --from=build /opt/riskwatch /opt/riskwatch
COPY rules /etc/riskwatch/rules
ENV PATH=/opt/riskwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RISKWATCH_RULES=/etc/riskwatch/rules \
    RISKWATCH_STATE=sqlite:////var/lib/riskwatch/state.db \
    RISKWATCH_HTTP=0.0.0.0:9464 \
    RISKWATCH_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/riskwatch
VOLUME ["/var/lib/riskwatch"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["riskwatch"]
CMD ["run"]
