"""wipwatch: a streaming work-in-process monitor for manufacturing value streams."""

__version__ = "0.1.0"
