"""Getting a dataset: acquire, index, and the procedurally drawn demo set."""
