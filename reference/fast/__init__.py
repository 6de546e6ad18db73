"""Fast kernels: the same integers as `quantspec.reference.ops`, computed quickly."""
