"""Pipeline parameters, each declared once: type, default, range or choices, description, and
the names PaddleX gives it (pipeline YAML / ``predict()`` aliases, serving request field).

A flow composes its :class:`ParameterSet` from its stages' (``OCR | TABLE``,
``OCR.prefixed("seal_det_", ...)``); the build's ``--param`` and YAML reading, the served
graphs' per-request checks, the PaddleX serving API's request schema, ``hpi-triton compare``
and the README's parameter tables are all read from those sets. Part of the runtime package
(numpy-free, no imports from the rest of hpi_triton).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Iterator, Mapping, Optional, Tuple

__all__ = ["Parameter", "ParameterError", "ParameterSet"]

_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


class ParameterError(ValueError):
    """A pipeline parameter has an unknown name or a value of the wrong type or range."""


@dataclass(frozen=True)
class Parameter:
    """One parameter of a served flow.

    Attributes:
        name: Its name in requests and ``--param`` (PaddleX's pipeline-level name where it
            has one, else the module-level one).
        kind: ``bool``, ``int``, ``float`` or ``str``.
        default: The value when neither the build nor the request sets it (None: the build
            sets it from the roles it was given).
        minimum, maximum: Inclusive bounds of a number (None: unbounded).
        choices: The values a string may take (empty: any).
        description: One line for docs and errors.
        aliases: Other spellings accepted for it (PaddleX's ``predict()`` / YAML names).
        serving: The field of PaddleX 3.7.2's serving request that sets it (None: none does).
        yaml: Where PaddleX's pipeline YAML keeps it when not at the top level under its own
            name: ``SubModule.key`` (``TextRecognition.score_thresh``).
        above: Whether the minimum itself is excluded (``> 0`` rather than ``>= 0``).
        also: Values accepted besides the range (``-1``: the model's own size).
    """

    name: str
    kind: type
    default: object = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Tuple[str, ...] = ()
    description: str = ""
    aliases: Tuple[str, ...] = ()
    serving: Optional[str] = None
    yaml: Optional[str] = None
    above: bool = False
    also: Tuple[object, ...] = ()

    def expected(self) -> str:
        """What a valid value is, in words: ``an integer ≥ 1``, ``a number in [0, 1]``."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        words = _TYPE_WORDS[self.kind]
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not self.above:
            text = f"{words} in [{_num(low)}, {_num(high)}]"
        else:
            parts = []
            if low is not None:
                parts.append(f"{'>' if self.above else '≥'} {_num(low)}")
            if high is not None:
                parts.append(f"≤ {_num(high)}")
            text = " ".join([words, " and ".join(parts)]).strip()
        return text + "".join(f", or {value!r}" for value in self.also)

    def convert(self, value, given_as: Optional[str] = None):
        """``value`` (a string from gRPC or ``--param``, or a JSON value) as this parameter's
        type, checked.

        Raises:
            ParameterError: names the parameter, says what is expected and what came.
        """
        try:
            converted = _convert(self.kind, value)
        except (TypeError, ValueError):
            converted = None
        if converted is None or not self.accepts(converted):
            raise ParameterError(f"parameter {given_as or self.name!r} must be "
                                 f"{self.expected()}, got {value!r}")
        return converted

    def accepts(self, value) -> bool:
        """Whether an already typed ``value`` is in range."""
        if value in self.also:
            return True
        if self.choices and value not in self.choices:
            return False
        if self.minimum is not None and (value <= self.minimum if self.above
                                         else value < self.minimum):
            return False
        return self.maximum is None or value <= self.maximum


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _convert(kind: type, value):
    if kind is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if not isinstance(value, (bool, int)) or value not in (0, 1):
            raise ValueError(value)
        return bool(value)
    if isinstance(value, bool):
        raise ValueError(value)  # True is not a threshold
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    if kind is int and isinstance(value, str):
        number = float(value)
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    return kind(value)


@dataclass(frozen=True)
class ParameterSet(Mapping):
    """Parameters by name, composed with ``|``; unknown names are refused listing the valid
    ones."""

    parameters: Tuple[Parameter, ...] = ()
    _by_name: Dict[str, Parameter] = field(default_factory=dict, compare=False, repr=False)
    # alias → name, built once: every request's parameters are resolved through it
    _by_alias: Dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        for parameter in self.parameters:
            if parameter.name in self._by_name and self._by_name[parameter.name] != parameter:
                raise ValueError(f"parameter {parameter.name!r} is declared twice, differently")
            self._by_name[parameter.name] = parameter
            self._by_alias.update(dict.fromkeys(parameter.aliases, parameter.name))

    @classmethod
    def of(cls, *parameters: Parameter) -> ParameterSet:
        """A set of ``parameters``."""
        return cls(tuple(parameters))

    def __getitem__(self, name: str) -> Parameter:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __or__(self, other: ParameterSet) -> ParameterSet:
        merged = dict(self._by_name)
        merged.update({p.name: p for p in other.parameters})
        return ParameterSet(tuple(merged.values()))

    def only(self, *names: str) -> ParameterSet:
        """The subset named ``names``."""
        return ParameterSet(tuple(self._by_name[n] for n in names))

    def without(self, *names: str) -> ParameterSet:
        """All but ``names``."""
        return ParameterSet(tuple(p for p in self.parameters if p.name not in names))

    def prefixed(self, renames: Mapping[str, Tuple[str, Optional[str]]]) -> ParameterSet:
        """These parameters under other names: ``{name: (new name, serving field)}`` (a
        nested pipeline's parameters as the outer one names them, e.g. seal_det_thresh)."""
        return ParameterSet(tuple(replace(self._by_name[old], name=new, serving=serving,
                                          aliases=(), yaml=None)
                                  for old, (new, serving) in renames.items()))

    def with_defaults(self, defaults: Mapping[str, object]) -> ParameterSet:
        """These parameters, those named in ``defaults`` defaulting to its values (a nested
        pipeline's YAML defaults, e.g. table_recognition's OCR: limit_side_len 960)."""
        return ParameterSet(tuple(replace(p, default=defaults[p.name]) if p.name in defaults
                                  else p for p in self.parameters))

    def with_aliases(self, aliases: Mapping[str, str]) -> ParameterSet:
        """These parameters, each named in ``aliases`` also accepted as its value."""
        return ParameterSet(tuple(replace(p, aliases=p.aliases + (aliases[p.name],))
                                  if p.name in aliases else p for p in self.parameters))

    def defaults(self) -> Dict[str, object]:
        """Name → default of the parameters that have one."""
        return {p.name: p.default for p in self.parameters if p.default is not None}

    def aliases(self) -> Dict[str, str]:
        """Alias → name."""
        return dict(self._by_alias)

    def serving_fields(self) -> Dict[str, Parameter]:
        """PaddleX serving request field → parameter, for those a field sets."""
        return {p.serving: p for p in self.parameters if p.serving}

    def resolve(self, name: str) -> Optional[str]:
        """The declared name of ``name`` or of its alias; None if unknown."""
        if name in self._by_name:
            return name
        return self._by_alias.get(name)

    def coerce(self, values: Optional[Mapping], base: Optional[Mapping] = None,
               what: str = "parameter") -> Dict[str, object]:
        """``base`` (default: the declared defaults) updated with ``values``, each converted
        to its parameter's type and checked.

        Raises:
            ParameterError: an unknown name (the valid ones listed), or a value of the wrong
                type or range (what is expected said).
        """
        merged = dict(self.defaults() if base is None else base)
        for raw_name, value in (values or {}).items():
            name = self.resolve(raw_name)
            if name is None:
                raise ParameterError(f"unknown {what} {raw_name!r}; valid: "
                                     f"{sorted(self) + sorted(self._by_alias)}")
            merged[name] = self._by_name[name].convert(value, raw_name)
        return merged
