"""quantspec production: the torch-backed path people deploy with.

Without torch installed the package still imports (so that the CLI's torch-free verbs, such as
`quantspec vectors check DIR --target reference`, run), and each of its functions names what is
missing when used.
"""

try:
    from .export import export
    from .io import load, save
    from .quantize import convert_jit, prepare_jit, quantize_jit
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise

    def __getattr__(name: str) -> object:
        raise ModuleNotFoundError(f"quantspec.production.{name} needs torch: pip install torch", name="torch")


__all__ = ["convert_jit", "export", "load", "prepare_jit", "quantize_jit", "save"]
