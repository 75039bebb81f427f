"""``wipwatch secrets``: the docker-compose stack's passwords, tokens and mosquitto's account files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wipwatch.cli.options import console
from wipwatch.errors import WipwatchError
from wipwatch.settings import load_settings
from wipwatch.site import load_site


def secrets(
    directory: Annotated[
        Path, typer.Option("--dir", help="where docker-compose.yml is: writes .env and secrets/ there")
    ] = Path("."),
    sites: Annotated[
        list[Path] | None,
        typer.Option(
            "--site", help="site file whose devices get an MQTT account; repeat (default: the site file)"
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="replace existing secrets (rotates all of them)")
    ] = False,
) -> None:
    """Generate the docker-compose stack's secrets: .env and mosquitto's password file and ACL."""
    from wipwatch.credentials import password_env_name, write_compose_secrets

    names = [load_site(path).site for path in (sites or [load_settings().site_file])]
    try:
        env_path, broker = write_compose_secrets(directory, names, force)
    except FileExistsError as exc:
        raise WipwatchError(str(exc)) from None
    console.print(f"wrote {env_path} (mode 0600): every password, token and key of the stack")
    console.print(f"wrote {broker.password_file} (salted hashes) and {broker.acl_file} (topic rights)")
    devices = ", ".join(f"device-{n} ({password_env_name('device-' + n)})" for n in names)
    console.print(f"device accounts: {devices}; docs/operations.md says how to rotate each secret")
