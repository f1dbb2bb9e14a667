"""Speech data, datasets and training loops."""
