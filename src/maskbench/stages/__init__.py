"""One module per workflow stage: the entry points the workflow scripts call."""
