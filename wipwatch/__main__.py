"""``python -m wipwatch``: the CLI."""

from wipwatch.cli import main

main()
