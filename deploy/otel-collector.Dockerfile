# The official OpenTelemetry collector on a base with a shell and wget, so that its
# container can have a health check (the official image has nothing but the collector).
ARG OTELCOL_VERSION=0.115.1
FROM otel/opentelemetry-collector-contrib:${OTELCOL_VERSION} AS collector

FROM busybox:1.37
COPY --from=collector /otelcol-contrib /otelcol-contrib
COPY otel-collector.yaml /etc/otelcol/config.yaml
USER 10001
EXPOSE 4317 13133
ENTRYPOINT ["/otelcol-contrib"]
CMD ["--config", "/etc/otelcol/config.yaml"]
