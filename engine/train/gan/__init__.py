"""FACIAL-GAN: target curves from phone timings, its data set, training (general and personal)."""
