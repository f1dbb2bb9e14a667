"""Audio in: decoding, resampling, voice activity, speech features."""
