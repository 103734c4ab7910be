"""maskbench: a reproducible benchmark for masked face recognition."""

__version__ = "0.1.0"
