"""Exceptions biasprobe raises for problems a user can fix; the CLI prints them as one line."""


class BiasprobeError(Exception):
    """Base class: the message says what went wrong and what to do."""


class CheckpointError(BiasprobeError):
    """A file that is not a checkpoint biasprobe can read safely."""


class InputError(BiasprobeError, ValueError):
    """An argument, image or data set that does not fit the request."""
