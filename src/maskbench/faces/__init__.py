"""Faces in images: detection, landmarks, alignment, synthetic masks and their rendering."""
