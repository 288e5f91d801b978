"""The build↔runtime contract of a graph's settings: a dataclass defined where the settings
are read (the runtime owns the schema), written by the build through :meth:`to_json`, read by
the graph through :meth:`from_json`."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Dict, TypeVar

T = TypeVar("T", bound="GraphSettings")


class GraphSettings:
    """Mixin of the settings dataclasses: JSON both ways, unknown fields refused."""

    def to_json(self) -> Dict[str, object]:
        """The settings as the graph's JSON (optional fields left unset are left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls: type[T], data) -> T:
        """Settings from the graph's JSON (or already typed).

        Raises:
            ValueError: a field this runtime does not know: the repository was built by
                another hpi-triton version.
        """
        if isinstance(data, cls):
            return data
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{cls.__name__}: the graph's settings carry fields this runtime "
                             f"does not know: {unknown}; rebuild the repository with this "
                             f"hpi-triton")
        return cls(**data)
