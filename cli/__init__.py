"""The ``biasprobe`` command line: thin Typer commands over the library."""
