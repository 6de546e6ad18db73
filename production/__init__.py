"""quantspec production: the torch-backed path people deploy with."""
