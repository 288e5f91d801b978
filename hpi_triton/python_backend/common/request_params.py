"""Checking pipeline parameters (build-time defaults and per-request Triton parameters).

Request parameters arrive as strings (gRPC has no float parameter type in every version), so
values are converted to the declared type and range-checked here. Part of the runtime package
shipped into the pipeline graphs.
"""

from typing import Dict, Optional

# name → (type, check[, PaddleX serving request field])
Spec = Dict[str, tuple]


class ParameterError(ValueError):
    """A pipeline parameter has an unknown name or a value of the wrong type or range."""


def _convert(kind: type, value):
    if kind is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        return bool(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return kind(value)


def coerce(values: Optional[Dict], spec: Spec, base: Dict, what: str = "parameter",
           aliases: Optional[Dict[str, str]] = None) -> Dict:
    """``base`` updated with ``values``, each known to ``spec`` (name → (type, check)),
    converted to its type and checked; ``aliases`` map other spellings to spec names."""
    aliases = aliases or {}
    merged = dict(base)
    for raw_name, value in (values or {}).items():
        name = aliases.get(raw_name, raw_name)
        if name not in spec:
            raise ParameterError(f"unknown {what} {raw_name!r}; valid: "
                                 f"{sorted(spec) + sorted(aliases)}")
        kind, check = spec[name][:2]  # a third element: PaddleX's serving name
        try:
            converted = _convert(kind, value)
        except (TypeError, ValueError):
            raise ParameterError(f"{what} {raw_name!r} is {value!r}; expected "
                                 f"{kind.__name__}") from None
        if not check(converted):
            raise ParameterError(f"{what} {raw_name!r} = {converted!r} is out of range")
        merged[name] = converted
    return merged
