"""Rendering-to-Video: training data from photos and videos, training, held-out quality."""
