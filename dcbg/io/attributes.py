"""Check an HDF5 object's attributes before HDF5 decodes their values

Text attributes (variable-length strings, as every .rtdc writer stores
them) keep their values in a *global heap collection* of the file. HDF5
walks the whole collection when it reads one value, and trusts its
object sizes: one flipped bit that makes an object size 0 (or points
the walk at zeroed free space) makes that walk loop forever inside
HDF5, where no signal can stop it (a bit flip in the bundled example
kept dclab's metadata parser busy for longer than 90 s). A huge declared
string length makes HDF5 allocate that much memory.

:func:`check_attribute_heaps` reads the object header of the object
itself (with plain reads of the file, not through HDF5), finds the
collections its variable-length attributes point to and walks each one
as HDF5 would, refusing sizes that would hang that walk or reach outside
the collection, before any value is decoded. It understands what HDF5
writes (version 1 and 2 object headers, compact attribute storage,
continuation chunks); attributes in dense storage (more than 8 with
``libver="latest"``, which no RT-DC writer uses) or with shared
datatypes are not inspected.
"""

from __future__ import annotations

import os
import struct

import h5py

#: object header message types (HDF5 file format specification, IV.A.2)
MSG_DATASPACE = 0x01
MSG_ATTRIBUTE = 0x0C
MSG_CONTINUATION = 0x10

#: datatype class of variable-length types (strings and sequences)
CLASS_VLEN = 9

#: bytes of one variable-length element as stored in an attribute:
#: sequence length (4), collection address (8), object index (4)
VLEN_ELEMENT_BYTES = 16

#: bytes of a global heap object's header (index, references, size)
HEAP_OBJECT_HEADER_BYTES = 16

#: largest global heap collection read for checking, bytes. HDF5 makes
#: collections of 4 KiB and larger only to hold one larger object; an
#: attribute of an RT-DC file is a short text (a few KiB of tables at
#: most), so a bigger collection is refused rather than read
MAX_HEAP_COLLECTION_BYTES = 64 * 1024**2

#: most object header chunks followed: HDF5 adds one per continuation
#: when an object gains attributes; RT-DC files have a handful
MAX_HEADER_CHUNKS = 1000

#: largest object header chunk read, bytes (HDF5's messages are at most
#: 64 KiB each and a chunk holds a few of them)
MAX_HEADER_CHUNK_BYTES = 16 * 1024**2

#: the address HDF5 writes for "none"
UNDEFINED_ADDRESS = 0xFFFFFFFFFFFFFFFF


class DamagedAttributeError(ValueError):
    """An attribute's stored value would hang HDF5 or exhaust memory"""


def check_attribute_heaps(h5obj, path, what: str = "root attributes") -> None:
    """Refuse attributes of `h5obj` whose values HDF5 could not read safely

    Parameters
    ----------
    h5obj: h5py.Group or h5py.Dataset
        Object whose attributes are checked (e.g. the file's root group);
        its file must use HDF5's default (sec2) file driver
    path: str or pathlib.Path
        The file, for messages
    what: str
        What the attributes are, for messages

    Raises
    ------
    DamagedAttributeError
        If an attribute's variable-length value points to a global heap
        collection HDF5 would loop on, one that lies outside the file, or
        an object that is missing or shorter than the value it declares;
        the one-line message names the file and the attribute
    """
    reader = _FileReader(h5obj.file, path)
    if reader.fd is None:
        return  # another file driver (in-memory files of tests): nothing to read
    try:
        info = h5py.h5o.get_info(h5obj.id)
        address, version = int(info.addr), int(info.hdr.version)
    except (OSError, RuntimeError, ValueError, AttributeError):
        return  # HDF5 could not read the header either: it reports that itself
    header = _ObjectHeader(reader, address + reader.base, version, what)
    checked = {}
    for name, vlen_refs in header.vlen_attributes():
        for length, heap_address, index, element_bytes in vlen_refs:
            if length == 0:
                continue  # an empty value: HDF5 does not read the heap
            if heap_address not in checked:
                checked[heap_address] = _walk_collection(
                    reader, heap_address + reader.base, name, what
                )
            sizes = checked[heap_address]
            if index not in sizes or length * element_bytes > sizes[index]:
                raise DamagedAttributeError(
                    f"The {what} of '{path}' are damaged: attribute '{name}' "
                    f"declares a value of {length * element_bytes} bytes, but "
                    f"its heap holds {sizes.get(index, 'no')} bytes for it; "
                    f"the file is damaged or crafted"
                )


def check_root_attributes(path, h5kwargs: dict | None = None) -> None:
    """Open `path` with h5py and check its root attributes (see above)

    Call this before dclab reads the metadata. A file HDF5 cannot open
    is left to the caller, which reports that.

    Parameters
    ----------
    path: str or pathlib.Path
        The file (or a name HDF5 opens it by)
    h5kwargs: dict, optional
        Keyword arguments of :class:`h5py.File` (e.g. ``locking``); the
        file is opened for reading only

    Raises
    ------
    DamagedAttributeError
        See :func:`check_attribute_heaps`
    """
    kwargs = {**(h5kwargs or {}), "mode": "r"}
    try:
        h5 = h5py.File(path, **kwargs)
    except Exception:  # not an HDF5 file: the caller's open says why
        return
    with h5:
        check_attribute_heaps(h5, path)


class _FileReader:
    """Reads bytes of an open HDF5 file through HDF5's own descriptor"""

    def __init__(self, h5file, path):
        self.path = path
        self.fd = None
        try:
            if h5file.id.get_access_plist().get_driver() != h5py.h5fd.SEC2:
                return
            self.fd = int(h5file.id.get_vfd_handle())
            # addresses in the file are relative to the end of the user block
            self.base = int(h5file.id.get_create_plist().get_userblock())
            self.size = os.fstat(self.fd).st_size
        except (OSError, RuntimeError, ValueError, AttributeError):
            self.fd = None

    def read(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise DamagedAttributeError(
                f"The {what} of '{self.path}' are damaged: they point to bytes "
                f"{offset}..{offset + size} of a file of {self.size} bytes"
            )
        if hasattr(os, "pread"):
            data = os.pread(self.fd, size, offset)
        else:  # Windows: HDF5 seeks before each of its own reads
            os.lseek(self.fd, offset, os.SEEK_SET)
            data = os.read(self.fd, size)
        if len(data) != size:
            raise DamagedAttributeError(
                f"The {what} of '{self.path}' are damaged: cannot read bytes "
                f"{offset}..{offset + size} of the file"
            )
        return data


class _ObjectHeader:
    """The messages of one object header (versions 1 and 2)"""

    def __init__(self, reader: _FileReader, offset: int, version: int, what: str):
        self.reader = reader
        self.offset = offset
        self.version = version
        self.what = what

    def _damaged(self, detail: str) -> DamagedAttributeError:
        return DamagedAttributeError(
            f"The {self.what} of '{self.reader.path}' are damaged: {detail}; the "
            f"file is damaged or crafted"
        )

    def messages(self):
        """Yield ``(type, data)`` of every message, following continuations"""
        chunks = [self._first_chunk()]
        visited = set()  # a damaged continuation may point back
        while chunks:
            data = chunks.pop(0)
            for mtype, body in self._chunk_messages(data):
                if mtype == MSG_CONTINUATION and len(body) >= 16:
                    address, length = struct.unpack_from("<QQ", body)
                    if address in visited:
                        continue
                    visited.add(address)
                    if len(visited) > MAX_HEADER_CHUNKS:
                        raise self._damaged(
                            f"more than {MAX_HEADER_CHUNKS} header chunks"
                        )
                    chunks.append(self._continuation(address, length))
                yield mtype, body

    def _read_chunk(self, offset: int, length: int) -> bytes:
        if length > MAX_HEADER_CHUNK_BYTES:
            raise self._damaged(f"a header chunk of {length} bytes")
        return self.reader.read(offset, length, self.what)

    def _first_chunk(self) -> bytes:
        if self.version == 1:
            # version, reserved, message count, reference count, chunk size,
            # then padding to 8 bytes
            prefix = self.reader.read(self.offset, 16, self.what)
            (length,) = struct.unpack_from("<I", prefix, 8)
            return self._read_chunk(self.offset + 16, length)
        prefix = self.reader.read(self.offset, 6, self.what)
        if prefix[:4] != b"OHDR":
            raise self._damaged("the object header has no signature")
        flags = prefix[5]
        pos = self.offset + 6
        if flags & 0x20:  # access, modification, change and birth times
            pos += 16
        if flags & 0x10:  # attribute storage phase change values
            pos += 4
        width = 1 << (flags & 0x03)
        length = int.from_bytes(self.reader.read(pos, width, self.what), "little")
        self._v2_flags = flags
        # messages, then a 4-byte checksum
        return self._read_chunk(pos + width, length)

    def _continuation(self, address: int, length: int) -> bytes:
        offset = address + self.reader.base
        data = self._read_chunk(offset, length)
        if self.version == 1:
            return data
        if data[:4] != b"OCHK":
            raise self._damaged("a header continuation has no signature")
        return data[4:-4]  # without signature and checksum

    def _chunk_messages(self, data: bytes):
        pos = 0
        if self.version == 1:
            while pos + 8 <= len(data):
                mtype, size = struct.unpack_from("<HH", data, pos)
                yield mtype, data[pos + 8 : pos + 8 + size]
                pos += 8 + size
            return
        order = 2 if self._v2_flags & 0x04 else 0
        end = len(data)
        while pos + 4 + order <= end:
            mtype = data[pos]
            (size,) = struct.unpack_from("<H", data, pos + 1)
            start = pos + 4 + order
            yield mtype, data[start : start + size]
            pos = start + size

    def vlen_attributes(self):
        """Yield ``(name, [(length, heap address, index, element bytes)])``"""
        for mtype, body in self.messages():
            if mtype != MSG_ATTRIBUTE:
                continue
            parsed = _parse_attribute(body)
            if parsed is not None:
                yield parsed


def _parse_attribute(body: bytes):
    """Name and variable-length references of an attribute message, or None"""
    if len(body) < 8:
        return None
    version, flags = body[0], body[1]
    name_size, type_size, space_size = struct.unpack_from("<HHH", body, 2)
    if version not in (1, 2, 3) or flags & 0x03:
        return None  # unknown version, or shared datatype/dataspace
    pad = (lambda n: -(-n // 8) * 8) if version == 1 else (lambda n: n)
    pos = 8 if version < 3 else 9
    name = body[pos : pos + name_size].split(b"\0", 1)[0]
    pos += pad(name_size)
    dtype = body[pos : pos + type_size]
    pos += pad(type_size)
    space = body[pos : pos + space_size]
    pos += pad(space_size)
    if len(dtype) < 16 or dtype[0] & 0x0F != CLASS_VLEN:
        return None
    count = _element_count(space)
    if count is None:
        return None
    # sequences: elements of the base type; strings: bytes
    is_string = dtype[1] & 0x0F == 1
    element_bytes = 1 if is_string else struct.unpack_from("<I", dtype, 12)[0]
    refs = []
    for index in range(count):
        start = pos + index * VLEN_ELEMENT_BYTES
        if start + VLEN_ELEMENT_BYTES > len(body):
            break  # HDF5 reports a short attribute itself
        length, address, heap_index = struct.unpack_from("<IQI", body, start)
        refs.append((length, address, heap_index, max(1, element_bytes)))
    return name.decode("utf-8", errors="replace"), refs


def _element_count(space: bytes) -> int | None:
    """Number of elements of a dataspace message (None: cannot tell)"""
    if len(space) < 4:
        return None
    version, rank = space[0], space[1]
    if version == 1:
        dims_at = 8
    elif version == 2:
        if space[3] == 2:  # null dataspace
            return 0
        dims_at = 4
    else:
        return None
    count = 1
    for axis in range(rank):
        if dims_at + 8 * (axis + 1) > len(space):
            return None
        count *= struct.unpack_from("<Q", space, dims_at + 8 * axis)[0]
    return count


def _walk_collection(reader: _FileReader, offset: int, name: str, what: str) -> dict:
    """Walk a global heap collection as HDF5 does; sizes of its objects by index"""

    def damaged(detail):
        return DamagedAttributeError(
            f"The {what} of '{reader.path}' are damaged: the heap of attribute "
            f"'{name}' {detail}; the file is damaged or crafted"
        )

    header = reader.read(offset, 16, what)
    if header[:4] != b"GCOL":
        raise damaged(f"at byte {offset} has no signature")
    (size,) = struct.unpack_from("<Q", header, 8)
    if size > MAX_HEAP_COLLECTION_BYTES:
        raise damaged(
            f"declares {size} bytes; expected at most {MAX_HEAP_COLLECTION_BYTES}"
        )
    data = reader.read(offset, size, what)
    sizes = {}
    pos = 16
    while pos < size:
        if pos + HEAP_OBJECT_HEADER_BYTES > size:
            break  # too small for an object: free space
        index, _refs = struct.unpack_from("<HH", data, pos)
        (object_size,) = struct.unpack_from("<Q", data, pos + 8)
        if index > 0:
            need = HEAP_OBJECT_HEADER_BYTES + -(-object_size // 8) * 8
            sizes[index] = object_size
        else:
            need = object_size  # free space, its header included
        if need == 0:
            # HDF5 would read this object header again and again
            raise damaged(f"has an object of size 0 at byte {offset + pos}")
        if need > size - pos:
            raise damaged(
                f"has an object of {object_size} bytes at byte {offset + pos} "
                f"reaching beyond its {size} bytes"
            )
        pos += need
    return sizes
