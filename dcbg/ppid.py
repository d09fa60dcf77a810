"""Pipeline identifiers (PPIDs) for background methods

A PPID names a method and all of its keyword arguments in one string,
``CODE:KEY=VALUE^KEY=VALUE``, e.g. ``sparsemed:k=200^s=1^t=0^f=0.8^o=1``.
Keys are abbreviated to their shortest unique prefix among the method's
keyword arguments, booleans are written as 0/1 and integral floats
without ``.0``. The strings are identical to those of dcnum 0.31.0, so
that files processed by either tool can be compared by their PPID.
"""

from __future__ import annotations

import inspect
import math
import numbers
import typing

import numpy as np

#: dcnum's pipeline generation that our results are identical to
PPID_GENERATION = "13"


def get_unique_prefixes(names: list[str]) -> list[str]:
    """Return the shortest prefix of each name that no other name shares

    A name that is a prefix of another name is kept whole, and the
    longer name gets one more character than the shorter one.

    Parameters
    ----------
    names: list of str
        Distinct keyword argument names

    Returns
    -------
    prefixes: list of str
        One prefix per name, in the same order
    """
    if len(set(names)) != len(names):
        raise ValueError(f"Names must be unique, got {names}")
    prefixes = []
    for name in names:
        length = 1
        for other in names:
            if other == name:
                continue
            common = 0
            for ca, cb in zip(name, other, strict=False):
                if ca != cb:
                    break
                common += 1
            length = max(length, common + 1)
        prefixes.append(name[: min(length, len(name))])
    return prefixes


def resolve_annotations(func) -> None:
    """Replace string annotations of `func` by the types they name

    With ``from __future__ import annotations`` a method's annotations are
    strings (``"int"``); dcnum's ``convert_to_dtype`` and tools that read
    ``inspect`` signatures need the types themselves. Names that cannot
    be resolved (e.g. forward references) are left as they are.
    """
    annotations = getattr(func, "__annotations__", None)
    if not annotations or not any(isinstance(a, str) for a in annotations.values()):
        return
    try:
        hints = typing.get_type_hints(func)
    except (NameError, TypeError, AttributeError):
        return
    for name in annotations:
        if name in hints:
            annotations[name] = hints[name]


def get_kwarg_spec(cls) -> dict[str, tuple[type, typing.Any]]:
    """Keyword arguments of ``cls.check_user_kwargs``: name -> (type, default)

    The order is the order of the signature, which defines the PPID.
    """
    method = cls.check_user_kwargs
    hints = typing.get_type_hints(method)
    spec = {}
    for name, param in inspect.signature(method).parameters.items():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        dtype = hints.get(name, type(param.default))
        spec[name] = (dtype, param.default)
    return spec


def format_value(value) -> str:
    """Format one keyword argument value for a PPID

    Python and numpy scalars give the same string as in dcnum: booleans
    are 0/1 (``np.True_`` -> ``1``), integral floats lose their ``.0``
    (``np.float32(2.0)`` -> ``2``), other numbers are written as they
    print (``np.float32(0.8)`` -> ``0.8``).
    """
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (numbers.Real, np.floating)) and not isinstance(
        value, numbers.Integral
    ):
        if math.isfinite(value) and value == int(value):
            return str(int(value))
    return f"{value}"


def kwargs_to_ppid(cls, kwargs: dict) -> str:
    """Return the keyword-argument part of a PPID for a background class

    Parameters
    ----------
    cls: type
        Background subclass whose ``check_user_kwargs`` defines the keys
    kwargs: dict
        Keyword arguments; missing keys take their default values

    Raises
    ------
    ValueError
        If `kwargs` holds a key that the method does not accept
    """
    spec = get_kwarg_spec(cls)
    unknown = sorted(set(kwargs) - set(spec))
    if unknown:
        raise ValueError(
            f"Unknown keyword argument(s) {unknown} for background method "
            f"'{cls.get_ppid_code()}'; valid are {list(spec)}"
        )
    names = list(spec)
    parts = []
    for name, abbrev in zip(names, get_unique_prefixes(names), strict=True):
        value = kwargs.get(name, spec[name][1])
        parts.append(f"{abbrev}={format_value(value)}")
    return "^".join(parts)


#: PPID texts of a boolean value, as dcnum's PPIDs write and read them
BOOL_TEXTS = {"1": True, "0": False, "true": True, "false": False}
BOOL_TEXTS.update({"yes": True, "no": False})


def convert_value(text: str, dtype: type, name: str):
    """Convert the string value of a PPID entry to the keyword's type

    Raises
    ------
    ValueError
        If `text` is not a value of `dtype`; a boolean accepts only
        0/1, true/false and yes/no (any case), so that e.g. ``o=2`` is
        an error rather than silently ``True``
    """
    if dtype is bool:
        lower = text.strip().lower()
        if lower in BOOL_TEXTS:
            return BOOL_TEXTS[lower]
        try:
            number = float(lower)
        except ValueError:
            number = None
        if number in (0, 1):  # e.g. "1.0"
            return bool(number)
        raise ValueError(
            f"Value '{text}' of PPID key '{name}' is out of its domain: "
            f"'{name}' is a boolean, expected 0 or 1 (or true/false)"
        )
    try:
        if dtype is int:
            return int(text)
        if dtype is float:
            return float(text)
        return dtype(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"Cannot convert value '{text}' of PPID key '{name}' to "
            f"{getattr(dtype, '__name__', dtype)}"
        ) from exc


def ppid_to_kwargs(cls, kwargs_ppid: str) -> dict:
    """Parse the keyword-argument part of a PPID into full keyword arguments

    Abbreviated keys (any unique prefix) and partial PPIDs (missing keys
    take their defaults) are accepted.

    Parameters
    ----------
    cls: type
        Background subclass whose ``check_user_kwargs`` defines the keys
    kwargs_ppid: str
        e.g. ``"k=100^b=10000"`` or ``"kernel_size=100"`` or ``""``

    Raises
    ------
    ValueError
        For an entry without ``=``, an unknown or repeated key, a value
        that cannot be converted to the keyword's type, or values that
        the method's ``check_user_kwargs`` rejects
    """
    spec = get_kwarg_spec(cls)
    kwargs = {name: default for name, (_, default) in spec.items()}
    code = cls.get_ppid_code()
    if not kwargs_ppid.strip():
        return kwargs
    entries = []
    for item in kwargs_ppid.split("^"):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"Invalid PPID entry '{item}' for method '{code}': expected 'key=value'"
            )
        entries.append((key.strip(), value.strip()))
    keys = [key for key, _ in entries]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(
            f"Duplicate key(s) {repeated} in PPID '{code}:{kwargs_ppid}'; "
            f"give each keyword argument once"
        )
    # Longer abbreviations first, so that e.g. "kernel" cannot steal the
    # key that "kernel_size" names exactly (as dcnum resolves them).
    entries.sort(key=lambda entry: -len(entry[0]))
    assigned = {}
    for key, value in entries:
        candidates = [name for name in spec if name.startswith(key)]
        if key in spec:
            candidates = [key]
        free = [name for name in candidates if name not in assigned]
        if not candidates:
            raise ValueError(
                f"Unknown key '{key}' in PPID for background method "
                f"'{code}'; valid keys are {list(spec)}"
            )
        if not free:
            raise ValueError(
                f"Duplicate key '{key}' in PPID '{code}:{kwargs_ppid}': "
                f"'{candidates[0]}' is already given as "
                f"'{assigned[candidates[0]]}'"
            )
        name = free[0]
        kwargs[name] = convert_value(value, spec[name][0], name)
        assigned[name] = key
    try:
        cls.check_user_kwargs(**kwargs)
    except ValueError as exc:
        raise ValueError(
            f"Value out of its domain in PPID '{code}:{kwargs_ppid}': {exc}"
        ) from exc
    return kwargs
