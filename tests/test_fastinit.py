"""``fast_init``: the same constructor as the dataclass's, only faster; still frozen."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest

from policyrouter.fastinit import fast_init, maker
from policyrouter.state.base import AdmitResult, BudgetCharge, CacheEntry, LedgerRow, ReserveResult
from policyrouter.types import Attempt, ProviderRequest, ProviderResponse, Result, Usage


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "x"
    c: dict[str, Any] = field(default_factory=dict)
    d: tuple[int, ...] = ()


@fast_init
@dataclass(frozen=True, slots=True)
class Fast:
    a: int
    b: str = "x"
    c: dict[str, Any] = field(default_factory=dict)
    d: tuple[int, ...] = ()


def _params(cls: type) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(cls).parameters.values()]


def test_same_signature_values_equality_and_repr_as_the_dataclass() -> None:
    plain_sig, fast_sig = _params(Plain), _params(Fast)
    assert [(n, k) for n, k, _ in fast_sig] == [(n, k) for n, k, _ in plain_sig]
    assert [d for n, _, d in fast_sig if n in ("a", "b", "d")] == [inspect.Parameter.empty, "x", ()]
    for args, kwargs in (((1,), {}), ((1, "y"), {"d": (2,)}), ((), {"a": 3, "c": {"k": 1}})):
        f, p = Fast(*args, **kwargs), Plain(*args, **kwargs)
        assert dataclasses.astuple(f) == dataclasses.astuple(p)
        assert repr(f).replace("Fast", "X") == repr(p).replace("Plain", "X")
    assert Fast(1) == Fast(1) and Fast(1) != Fast(2)
    assert hash(Fast(1, d=(1,)).d) == hash((1,))


def test_default_factory_builds_a_fresh_value_each_time() -> None:
    one, two = Fast(1), Fast(2)
    assert one.c == {} and one.c is not two.c


def test_still_frozen_and_slotted() -> None:
    f = Fast(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.a = 2  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        f.__dict__  # noqa: B018
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        Fast(1, nope=2)  # type: ignore[call-arg]


def test_classes_it_cannot_reproduce_are_left_alone() -> None:
    @dataclass(frozen=True, slots=True)
    class WithPost:
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("negative")

    @dataclass(frozen=True, slots=True, kw_only=True)
    class KwOnly:
        a: int

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    for cls in (WithPost, KwOnly, NoSlots):
        init = cls.__init__
        assert fast_init(cls) is cls and cls.__init__ is init
    with pytest.raises(ValueError, match="negative"):
        WithPost(-1)


@pytest.mark.parametrize(
    "cls",
    [Usage, ProviderRequest, ProviderResponse, Attempt, Result, CacheEntry, LedgerRow],
)
def test_hot_path_types_keep_their_dataclass_constructor(cls: type) -> None:
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default
        elif f.default_factory is dataclasses.MISSING:
            assert p.default is inspect.Parameter.empty
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
    assert "<string>" in cls.__init__.__code__.co_filename  # the fast constructor is installed


def test_a_subclass_instance_keeps_its_own_class() -> None:
    @fast_init
    @dataclass(frozen=True, slots=True)
    class Base:  # enough fields for the twin-class path
        a: int
        b: str = "x"
        c: int = 0
        d: int = 0
        e: int = 0
        f: int = 0
        g: int = 0

    class Child(Base):  # inherits Base's fast __init__
        __slots__ = ()

    base = Base(1)
    child = Child(2, "y")
    assert type(base) is Base and (base.a, base.b) == (1, "x")
    assert type(child) is Child and (child.a, child.b) == (2, "y")
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.a = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cls", "names", "defaults"),
    [
        (BudgetCharge, ["budget", "key", "amount", "limit", "expires_at"], {}),
        (ReserveResult, ["ok", "reservation_id", "denied_budget", "used", "limit"], {"used": 0.0}),
        (AdmitResult, ["stage", "probe", "slot", "wait", "reserve"], {"probe": False, "wait": 0.0, "reserve": None}),
    ],
)
def test_per_attempt_state_values_are_immutable_named_tuples(
    cls: type, names: list[str], defaults: dict[str, object]
) -> None:
    """Built on every budgeted attempt, so named tuples (cheap to build), with the dataclass
    era's constructor signature, field names and immutability."""
    params = inspect.signature(cls).parameters
    assert list(params) == names
    for name, default in defaults.items():
        assert params[name].default == default
    first = names[0]
    value = cls(*[f"v{i}" for i in range(len(names))])
    assert getattr(value, first) == "v0" and value == tuple(f"v{i}" for i in range(len(names)))
    with pytest.raises(AttributeError):
        setattr(value, first, "changed")


@pytest.mark.parametrize("cls", [ProviderRequest, Attempt, Result, LedgerRow])
def test_maker_builds_the_same_frozen_instance_as_the_constructor(cls: type) -> None:
    import pickle

    values = [f"v{i}" for i, _ in enumerate(dataclasses.fields(cls))]
    made, built = maker(cls)(*values), cls(*values)
    assert type(made) is cls and made == built and repr(made) == repr(built)
    assert pickle.loads(pickle.dumps(made)) == built
    assert dataclasses.replace(made, **{dataclasses.fields(cls)[0].name: "x"}) != built
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, dataclasses.fields(cls)[0].name, "changed")
    with pytest.raises(TypeError, match=r"missing \d+ required positional argument"):
        maker(cls)(*values[:1])


def test_maker_applies_the_dataclass_defaults() -> None:
    make = maker(ProviderRequest)
    one, two = make("m", (), 5), make("m", (), 5)
    assert one == ProviderRequest("m", (), 5) and one.stop == () and one.output is None
    assert one.extra == {} and one.extra is not two.extra  # default_factory: a fresh value each time
    assert make("m", (), 5, "sys").system == "sys"


def test_hot_path_field_order_is_pinned() -> None:
    """execute.run and the router build these positionally: a reordered field must fail here."""
    from policyrouter.execute import Request

    expected = {
        ProviderRequest: "model messages max_output_tokens system temperature timeout_s stop extra tools tool_choice "
        "output",
        Attempt: "model provider outcome error_kind latency_s request_id status_code message retry_after_s cost_usd "
        "usage started_s",
        Result: "text model provider usage cost_usd cache_hit route attempts latency_s task finish_reason request_id "
        "stale parsed tool_calls",
        LedgerRow: "ts request_id task route model tenant user input_tokens output_tokens cached_input_tokens cost_usd "
        "provider_request_ids outcome attempts metadata",
        Request: "request_id task route chain messages system input_tokens max_output_tokens temperature tenant user "
        "metadata extra started output tools tool_choice guard on_event",
    }
    for cls, names in expected.items():
        assert [f.name for f in dataclasses.fields(cls)][: len(names.split())] == names.split(), cls.__name__


def test_maker_of_a_class_it_cannot_twin_is_the_class() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(slots=True)
    class Mutable:
        a: int

    assert maker(NoSlots) is NoSlots and maker(Mutable) is Mutable


def test_maker_builds_one_factory_per_class() -> None:
    """Every module that asks for ``Result``'s factory gets the same one (one twin class)."""
    from policyrouter.fastinit import maker
    from policyrouter.types import Result

    assert maker(Result) is maker(Result)
    assert maker(Result).__name__ == "make_Result"
