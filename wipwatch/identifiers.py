"""The one identifier pattern: site, line, location, alert-rule ids and MQTT account names.

Identifiers appear in MQTT topics, Kafka keys, InfluxDB tags and database names: no '/', '+', '#', spaces
or commas. The site file (``site.py``), alert rules, the event schema, credentials and the CLI all use it.
"""

from __future__ import annotations

from typing import Final

IDENT_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
