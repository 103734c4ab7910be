"""Training for masks: losses, projection heads, fine-tuning, epoch choice, settings."""
