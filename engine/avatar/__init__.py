"""Avatar bundles: the versioned on-disk format, loading with validation, building."""
