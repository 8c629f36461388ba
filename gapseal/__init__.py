"""gapseal: carry self-hosted AI across an air gap and prove it stayed there."""

__version__ = "0.1.0"
