"""The privacy stage: what a mask hides from an attribute attacker (table and figure)."""

from maskbench.attributes.privacy import write_privacy

__all__ = ["write_privacy"]
