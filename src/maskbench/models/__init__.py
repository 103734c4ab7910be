"""Networks that turn aligned chips into embeddings."""
