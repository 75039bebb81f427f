"""Faust stream processors: agents and tables (thin); the math is in ``metrics``."""
