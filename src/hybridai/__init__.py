"""hybridai: open, vendor-neutral hybrid AI across edge nodes and a cloud tier."""

__version__ = "0.1.0"
__all__ = ["__version__"]
