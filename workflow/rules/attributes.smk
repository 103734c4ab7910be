# Attribute prediction on masked faces (AJCAI 2021): splits, heads on embeddings, tables.
