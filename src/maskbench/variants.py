"""The names of a dataset's variants, defined once: the bare photos, every painted mask, the real masks.

A leaf module (imports nothing) so the configuration, the manifests and the training code can
all name the variants without importing each other.
"""

UNMASKED = "unmasked"  # the bare photos (aligned chips as they are)
MASKED = "masked"  # in a comparison: each of the dataset's mask types in turn
REAL = "real"  # a dataset's photos of real masks (never painted over)
