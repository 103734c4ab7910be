"""Files: every Parquet schema, atomic writes, the chip codec, image reading, score files."""
