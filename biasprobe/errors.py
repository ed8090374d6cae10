"""Exceptions and warnings biasprobe raises for problems a user can fix; the CLI prints them as one line.

A message that tells the user to change an argument names it as a field of a template,
``InputError("{top_k} must be positive", parameters=["top_k"])``: the library renders the
field as the parameter's own name (``top_k``), and the CLI, through :meth:`Templated.render`
and its one table of parameters and flags, as the flag (``--top-k``). A field may carry the value
to set, ``"use {method=dense}"``: ``method='dense'`` in Python, ``--method dense`` on the command
line. No message names a flag. Warnings (:class:`BiasprobeWarning`) follow the same contract.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

FIELD = re.compile(r"\{(\w+)(?:=([^{}]*))?\}")
"""A template field: ``{name}`` or ``{name=value}``."""


class Templated:
    """A message template whose fields name parameters, rendered in the library's words or the CLI's.

    ``parameters`` lists the template fields of the message (the parameters that it tells the
    user to change), or maps each field to the words the library writes for it where these are not
    the field itself (``{"out": "path"}``); without them the message is plain text.
    """

    def __init__(self, message: str, *, parameters: Iterable[str] | Mapping[str, str] = ()) -> None:
        super().__init__(message)
        self.template = message
        self.parameters = dict(parameters) if isinstance(parameters, Mapping) else {p: p for p in parameters}

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each parameter written as ``names[field]`` (default: the library's words);
        a field with a value is ``words='value'`` in the library's words, ``FLAG value`` in ``names``."""

        def written(match: re.Match) -> str:
            field, value = match.groups()
            if field not in self.parameters:
                return match.group(0)
            name = (names or {}).get(field)
            if value is None:
                return name or self.parameters[field]
            return f"{name.split()[0]} {value}" if name else f"{self.parameters[field]}={value!r}"

        return FIELD.sub(written, self.template)

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self):
        return _rebuild, (type(self), self.template, self.parameters)


def _rebuild(kind: type[Templated], template: str, parameters: dict[str, str]) -> Templated:
    return kind(template, parameters=parameters)


class BiasprobeError(Templated, Exception):
    """Base class: the message says what went wrong and what to do (a :class:`Templated` message)."""


class BiasprobeWarning(Templated, UserWarning):
    """Base class of biasprobe's warnings: a result that is usable but short of what was asked, with
    what to do (a :class:`Templated` message; ``warnings.warn(SomeWarning(template, parameters=...))``)."""


class CheckpointError(BiasprobeError):
    """A file that is not a checkpoint biasprobe can read safely."""


class UnrecognisedFileError(CheckpointError):
    """A file that no checkpoint format recognises (not a zip archive, pickle or safetensors file);
    :func:`biasprobe.load` adds the list of supported formats to its message."""


class InputError(BiasprobeError, ValueError):
    """An argument, image or data set that does not fit the request."""


class ParameterError(InputError):
    """A bad value of one named parameter: the message is ``{parameter} problem``.

    ``problem`` may name further parameters as ``{name}`` fields (``"... set {overwrite}"``); all
    are rendered as names by the library and as flags by the CLI (see :meth:`BiasprobeError.render`).
    """

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        fields = re.findall(r"\{(\w+)\}", problem)
        super().__init__("{" + parameter + "} " + problem, parameters=list(dict.fromkeys([parameter, *fields])))

    def __reduce__(self):
        return type(self), (self.parameter, self.problem)


class TrainingDiverged(InputError):
    """Training stopped because its loss diverged (not finite, or far above its lowest level so far:
    :data:`biasprobe.training.loop.DIVERGENCE_FACTOR`); the checkpoint on disk keeps the last weights
    saved before. ``step`` is the step at which it was seen, ``kept`` the step of the kept weights."""

    def __init__(self, message: str, *, step: int = 0, kept: int = 0, parameters=()) -> None:
        super().__init__(message, parameters=parameters)
        self.step, self.kept = step, kept

    def __reduce__(self):
        return _rebuild_diverged, (self.template, self.parameters, self.step, self.kept)


def _rebuild_diverged(template: str, parameters: dict[str, str], step: int, kept: int) -> TrainingDiverged:
    return TrainingDiverged(template, step=step, kept=kept, parameters=parameters)


class OutputError(InputError):
    """An output path that cannot be written, or holds something biasprobe must not replace."""
