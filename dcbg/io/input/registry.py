"""Input kinds: what ``input_data`` can be, chosen from a registry

A background method takes ``input_data`` as dcnum does: the path of an
.rtdc file or an array-like image stack. :func:`open_input` asks each
registered input kind, in the order registered, whether it accepts the
data, and opens them with the first that does. A kind is a class with

- ``accepts(input_data) -> bool`` (class method): whether it reads
  these data;
- ``open(input_data, policy)`` (class method): the
  opened measurement, with the interface of
  :class:`~dcbg.io.input.RtdcMeasurement` that a method uses (``path``,
  ``images``, ``h5``, ``is_file``, ``get_feature``, ``get_frame_rate``,
  ``refused_basins``, ``followed_basins``, ``get_basin_features``,
  ``config``, ``close``).

A new input kind (a remote file, a zarr store, ...) is one module that
defines such a class and decorates it with :func:`register_input_kind`;
:mod:`dcbg.io.input.array_input` is the array-like kind.
"""

from __future__ import annotations

#: the registered input kinds, tried in this order by open_input
INPUT_KINDS: list[type] = []


def register_input_kind(cls: type, *, first: bool = False) -> type:
    """Register an input kind (usable as a class decorator)

    Parameters
    ----------
    cls: type
        The input kind (see the module documentation)
    first: bool
        Try it before the kinds registered so far (the array-like kind
        accepts anything that is not a path: a kind for other objects
        goes before it)
    """
    if cls in INPUT_KINDS:
        INPUT_KINDS.remove(cls)
    if first:
        INPUT_KINDS.insert(0, cls)
    else:
        INPUT_KINDS.append(cls)
    return cls


def input_kind_of(input_data) -> type:
    """The registered input kind that reads `input_data`

    Raises
    ------
    TypeError
        If no kind accepts the data
    """
    for kind in INPUT_KINDS:
        if kind.accepts(input_data):
            return kind
    raise TypeError(
        f"input_data must be the path of an .rtdc file or an array-like image "
        f"stack, got {type(input_data).__name__}"
    )


def open_input(input_data, policy=None):
    """Open `input_data` with the input kind that accepts it

    Parameters
    ----------
    input_data: str, os.PathLike, array-like or ImageStack
        What the method was given
    policy: dcbg.io.input.BasinPolicy or None
        Which basins a file may make dcbg follow (None: the default
        policy, internal and file basins, no remote basins)

    Returns
    -------
    measurement: RtdcMeasurement or ArrayInput
        The opened input; close it with ``close()``
    """
    return input_kind_of(input_data).open(input_data, policy)


__all__ = ["INPUT_KINDS", "input_kind_of", "open_input", "register_input_kind"]
