"""biasprobe's version, in a module of its own so that the modules the package's public names load can
read it without importing the package's lazy ``__init__`` (which would close an import cycle)."""

__version__ = "0.1.0"
