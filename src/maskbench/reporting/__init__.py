"""Tables and figures (no torch, no cv2)."""
