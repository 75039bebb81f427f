# One image for every wipwatch service; docker-compose.yml picks the command (ingest, process, simulate, ...).
# The whole build context is copied as one tree: a new package folder cannot be forgotten here, and
# .dockerignore keeps out what must never enter an image (.env, secrets/, .git, .venv, run directories).
# tests/unit/test_image_build.py builds and installs the package from exactly these files.
FROM python:3.11-slim
COPY . /src
RUN pip install --no-cache-dir /src \
    && rm -rf /src \
    && useradd --system --create-home --home-dir /var/lib/wipwatch wipwatch
# The site files, dashboards and provisioning are package data: the default site file
# (WIPWATCH_SITE_FILE) resolves inside the installed package.
ENV WIPWATCH_RUN_DIR=/var/lib/wipwatch
USER wipwatch
WORKDIR /var/lib/wipwatch
ENTRYPOINT ["wipwatch"]
