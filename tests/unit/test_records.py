"""``utils._records.Record``: typing.NamedTuple's class syntax without importing typing.
The records of the whole package are built by it, so it must behave as NamedTuple does."""

from __future__ import annotations

import pickle

import pytest

from utils._records import Record


class Point(Record):
    """A record for the tests."""

    x: int
    y: int = 0
    label: str = "origin"

    @property
    def norm(self) -> int:
        return abs(self.x) + abs(self.y)

    def moved(self, by: int) -> Point:
        return self._replace(x=self.x + by)


def test_fields_defaults_and_tuple_behaviour() -> None:
    point = Point(3)
    assert point == (3, 0, "origin") and isinstance(point, tuple)
    assert Point._fields == ("x", "y", "label")
    assert Point._field_defaults == {"y": 0, "label": "origin"}
    assert Point(1, y=2, label="a") == Point(x=1, y=2, label="a")
    assert repr(Point(1)) == "Point(x=1, y=0, label='origin')"
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]


def test_methods_properties_and_docstring_belong_to_the_record() -> None:
    point = Point(3, -4)
    assert point.norm == 7
    assert point.moved(2) == Point(5, -4)
    assert Point.__doc__ == "A record for the tests."
    assert Point.__qualname__ == "Point" and Point.__module__ == __name__
    assert Point.__annotations__ == {"x": "int", "y": "int", "label": "str"}
    assert not hasattr(point, "__dict__")  # slots, as a namedtuple: no per-row dict


def test_records_pickle_by_name() -> None:
    assert pickle.loads(pickle.dumps(Point(1, 2))) == Point(1, 2)


def test_a_field_without_a_default_may_not_follow_one_with_a_default() -> None:
    with pytest.raises(TypeError, match="without a default follows"):

        class Bad(Record):
            first: int = 0
            second: int
