"""The built-in speech-features model: speech corpus (synthesisers, recordings, alignment) and training."""
