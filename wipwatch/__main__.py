"""``python -m wipwatch``: the CLI (the composition root in ``cli/``; the core's one entry point into it)."""

from wipwatch.cli.main import main

main()
