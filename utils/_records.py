"""``Record``: ``typing.NamedTuple``'s class syntax without importing ``typing`` at run time.

``typing`` (with ``re``, ``contextlib`` and ``functools`` beneath it) costs more start-up
time than a whole ``check`` of a free port may take, and the command line needs nothing
of it but NamedTuple's class syntax. Type checkers see ``typing.NamedTuple`` itself; the
program gets the same class built by ``collections.namedtuple``: the annotated fields in
order, their defaults, and every other name of the class body (methods, properties,
the docstring) set on it, as ``typing.NamedTuple`` does.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers know it)
__all__ = ["Record"]

if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    # Names of the class body that describe the class rather than belong on it.
    _CLASS_ONLY = frozenset({"__module__", "__qualname__", "__annotations__"})

    class _RecordType(type):
        def __new__(cls, name: str, bases: tuple[type, ...], body: dict[str, object]):
            if not bases:  # the base class Record itself
                return super().__new__(cls, name, bases, body)
            fields = tuple(body.get("__annotations__", {}))
            defaults = [body[field] for field in fields if field in body]
            if any(field not in body for field in fields[len(fields) - len(defaults) :]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            record = collections.namedtuple(
                name, fields, defaults=defaults, module=body.get("__module__")
            )
            record.__qualname__ = body.get("__qualname__", name)
            record.__annotations__ = dict(body.get("__annotations__", {}))
            for key, value in body.items():
                if key not in fields and key not in _CLASS_ONLY:
                    setattr(record, key, value)
            return record

    class Record(metaclass=_RecordType):
        """The base of the package's records (see the module docstring)."""
