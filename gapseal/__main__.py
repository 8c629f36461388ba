"""``python -m gapseal``."""

from gapseal.cli import run

run()
