"""Small user functions recognised by their bytecode, so that the operators can run them in C.

`lambda a, b: a + b` is operator.add, and `lambda w: (w, 1)` pairs each element with the constant 1,
so `map(lambda w: (w, 1)).reduce_by_key(add)` is a count of the elements. Recognition is exact: the
function's whole body must be that expression (no defaults, closures or globals), else it is None
and the operator calls the function as it is.
"""

from __future__ import annotations

import dis
import operator
import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_NOISE = {"RESUME", "CACHE", "NOP", "EXTENDED_ARG"}
_NOT_PLAIN = 0x04 | 0x08 | 0x20 | 0x80 | 0x100 | 0x200  # *args, **kwargs, generator, coroutine


def _body(fn: Any, nargs: int) -> list[tuple[str, Any]] | None:
    """The function's instructions as (opname, argval), when it is a plain function of nargs
    positional arguments; None for anything else."""
    if type(fn) is not types.FunctionType or fn.__defaults__ or fn.__kwdefaults__ or fn.__closure__:
        return None
    code = fn.__code__
    if code.co_argcount != nargs or code.co_kwonlyargcount or code.co_posonlyargcount > nargs:
        return None
    if code.co_flags & _NOT_PLAIN or code.co_freevars or code.co_cellvars:
        return None
    return [(i.opname, i.argval) for i in dis.get_instructions(fn) if i.opname not in _NOISE]


def operator_of(fn: Any) -> Any:
    """operator.add for `lambda a, b: a + b` (and a function whose body is that), else fn."""
    body = _body(fn, 2)
    if body is None:
        return fn
    a, b = fn.__code__.co_varnames[:2]
    if body == [("LOAD_FAST", a), ("LOAD_FAST", b), ("BINARY_OP", 0), ("RETURN_VALUE", None)]:
        return operator.add
    return fn


def pairs_with_one(fn: Any) -> bool:
    """Whether fn is `lambda x: (x, 1)`: each element paired with the int 1."""
    body = _body(fn, 1)
    if body is None or len(body) != 4:
        return False
    (load, arg), (const, one), (build, n), (ret, _) = body
    return (
        load == "LOAD_FAST"
        and arg == fn.__code__.co_varnames[0]
        and const == "LOAD_CONST"
        and type(one) is int
        and one == 1
        and build == "BUILD_TUPLE"
        and n == 2
        and ret == "RETURN_VALUE"
    )
