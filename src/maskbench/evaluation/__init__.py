"""Scores and what they mean: scoring, metrics, operating points, groups, fusion (no torch, no cv2)."""
