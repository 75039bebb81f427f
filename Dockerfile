# One image for every wipwatch service; docker-compose.yml picks the command (ingest, process, simulate, ...).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY wipwatch wipwatch
COPY ingest ingest
COPY processors processors
COPY dashboards dashboards
COPY simulators simulators
COPY examples examples
RUN pip install --no-cache-dir .
ENV WIPWATCH_SITE_FILE=/app/examples/lean-line.yaml \
    WIPWATCH_RUN_DIR=/var/lib/wipwatch
ENTRYPOINT ["wipwatch"]
