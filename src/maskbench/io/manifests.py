"""Explicit pyarrow schemas of every Parquet manifest the workflow writes.

One place defines the columns, so a reader (pandas, polars, DuckDB) and the tests can rely on them.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from maskbench.variants import REAL, UNMASKED

# One row per image of a dataset. image_id is the POSIX path relative to the dataset's image root,
# stable across machines; identity is null where the set has none.
INDEX_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("identity", pa.string()),
        pa.field("source_path", pa.string(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("age", pa.int16()),
        pa.field("sex", pa.string()),
        pa.field("race", pa.string()),
        pa.field("pose", pa.string()),
        pa.field("real_mask", pa.bool_()),
        # images taken together (the video of a YouTube Faces frame): genuine pairs never within one
        pa.field("group", pa.string()),
    ]
)

# One row per image after alignment: status says what happened, chip is a PNG (RGB) or null.
ALIGNED_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("identity", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("detector", pa.string()),
        pa.field("detector_score", pa.float32()),
        pa.field("n_faces", pa.int16()),
        pa.field("landmarks", pa.list_(pa.float32(), 136)),
        pa.field("chip", pa.binary()),
        pa.field("real_mask", pa.bool_()),  # a photo of a real mask (variant `real`), from the index
        # image -> chip affine (2x3, row-major), so masks can be painted on the photo itself
        pa.field("transform", pa.list_(pa.float64(), 6)),
    ]
)

# One row per image and mask type.
MASKED_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("chip", pa.binary()),
    ]
)

EMBEDDING_SCHEMA_FIELDS = [
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
]

PAIRS_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.int64(), nullable=False),
        pa.field("ref_image", pa.string(), nullable=False),
        pa.field("ref_variant", pa.string(), nullable=False),
        pa.field("probe_image", pa.string(), nullable=False),
        pa.field("probe_variant", pa.string(), nullable=False),
        pa.field("genuine", pa.bool_(), nullable=False),
        pa.field("fold", pa.int16(), nullable=False),
    ]
)

SCORES_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.int64(), nullable=False),
        pa.field("ref_image", pa.string(), nullable=False),
        pa.field("probe_image", pa.string(), nullable=False),
        pa.field("genuine", pa.bool_(), nullable=False),
        pa.field("fold", pa.int16(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("status", pa.string(), nullable=False),
    ]
)

# The variant of a dataset's photos of real masks; `unmasked` then holds only its bare photos.
REAL_VARIANT = REAL
UNMASKED_VARIANT = UNMASKED
# Mask and embed status of a real-masked photo in a synthetic variant (never painted over).
REAL_MASK_STATUS = "real_mask"

# One epoch per row of a training run (a projection head or a fine-tuned backbone); epoch 0 is the
# starting model. No wall-clock time: it would change the bytes on every run (timings go to the log).
CURVE_SCHEMA = pa.schema([
    pa.field("epoch", pa.int32(), nullable=False),
    pa.field("loss", pa.float64()),  # mean training loss (null for epoch 0, the start)
    pa.field("val_eer", pa.float64()),  # masked-probe EER; null when val has no genuine or impostor pairs
    pa.field("val_genuine", pa.int64(), nullable=False),  # masked-probe val pairs the EER is over
    pa.field("val_impostor", pa.int64(), nullable=False),
    pa.field("val_unmasked_eer", pa.float64()),  # unmasked vs unmasked; null or NaN where val has no such pairs
])

# Statuses an image can have after alignment; usable ones go on to masking and embedding.
USABLE_STATUSES = ("ok", "fallback", "provided")


def embedding_schema(dim: int) -> pa.Schema:
    return pa.schema(EMBEDDING_SCHEMA_FIELDS + [pa.field("embedding", pa.list_(pa.float32(), dim))])


def shard_of(image_id: str, n_shards: int) -> int:
    """Stable shard of an image: the same image lands in the same shard on every machine."""
    digest = hashlib.blake2b(image_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n_shards
