# The watcher image: `failover watch` as a non-root user, state in a volume.
#   docker build -t failover .
#   docker run -v ./failover.yaml:/etc/failover/failover.yaml:ro -v failover-state:/var/lib/failover \
#     --env-file failover.env -p 127.0.0.1:9108:9108 failover
# Stage 1 builds the wheel and every extra's dependency; stage 2 only installs them.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md cli.py ./
COPY failover ./failover
COPY providers ./providers
COPY templates ./templates
RUN pip install --no-cache-dir --upgrade pip==24.3.1 \
 && pip wheel --no-cache-dir --wheel-dir /wheels ".[all]"

FROM python:3.11-slim
LABEL org.opencontainers.image.title="failover" \
      org.opencontainers.image.description="Keep a web service reachable when the company hosting it cuts it off"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "failover[all]" \
 && rm -rf /wheels \
 && groupadd --system --gid 10001 failover \
 && useradd --system --uid 10001 --gid failover --home-dir /var/lib/failover --shell /usr/sbin/nologin failover \
 && mkdir -p /var/lib/failover /etc/failover \
 && chown failover:failover /var/lib/failover
ENV FAILOVER_CONFIG=/etc/failover/failover.yaml \
    FAILOVER_STATE_DIR=/var/lib/failover \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/failover"]
USER failover:failover
WORKDIR /var/lib/failover
EXPOSE 9108
# SIGTERM (docker stop) lets the step in flight finish and journal before exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["failover"]
CMD ["watch", "--metrics-port", "9108", "--metrics-address", "0.0.0.0"]
