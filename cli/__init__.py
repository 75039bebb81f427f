"""The ``wipwatch`` command: the composition root, the one package that imports every service.

``main.py`` holds the typer app and registers the commands, which live by subject: ``simulate.py``,
``pipeline.py`` (ingest, process), ``views.py`` (top, board, dashboards), ``recording.py`` (record,
replay), ``stack.py`` (``up`` and its replay stacks, supervised by ``supervisor.py``), ``deploy.py``
(secrets), ``alerts.py`` and ``whatif.py`` (benchmark, whatif). Shared options and parsers:
``options.py``. The core (``wipwatch/``) and the services never import this package.
"""
