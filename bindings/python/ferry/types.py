"""Message types of the Python binding: how a Python value becomes the bytes C++ sends, and back.

A message type has a registry name (what C++'s ferry::type_name<T>() says, so a Python and a C++
endpoint of one topic agree), encode(value) -> bytes-like and decode(buffer) -> value.

Built in:
  bytes     "bytes"    ferry::Bytes (std::vector<uint8_t>): the raw bytes
  str       "string"   std::string: UTF-8
  bool, int8 ... uint64, float32, float64: the C++ scalars, native byte order (memcpy)
  int / float (Python types) mean int64 / float64
  numpy.ndarray  "ndarray"  an array with its dtype and shape (layout below)
  Raw("camera/Frame")  any C++ type, as raw bytes (for trivially copyable structs read in place)
  types from a FERRY_TYPE type-support module (load_types), converted to and from dict

"ndarray" wire layout (little-endian), so that a C++ program can read it too:
  offset 0   4 bytes  magic b"FNDA"
  offset 4   u16      ndim
  offset 6   u16      length L of the dtype string
  offset 8   u32      data offset D (a multiple of 64, so the data is 64-byte aligned)
  offset 12  u32      reserved (0)
  offset 16  ndim x u64  shape
  then       L bytes  the dtype in NumPy's array-interface form (dtype.str, e.g. "<f4", "|u1")
  offset D   the elements, C order, packed
"""

import ctypes
import json
import struct

__all__ = ["MessageType", "Raw", "ArrayType", "TypeSupport", "load_types", "resolve", "by_name", "NDARRAY"]


class MessageType:
    """A named codec. Subclasses define encode() and decode()."""

    name = ""

    def encode(self, value):  # -> bytes-like
        raise NotImplementedError

    def decode(self, buffer):  # buffer: a bytes-like view of the message
        raise NotImplementedError

    def __repr__(self):
        return "<ferry type %r>" % self.name


class _Bytes(MessageType):
    name = "bytes"

    def encode(self, value):
        return value

    def decode(self, buffer):
        return bytes(buffer)


class _String(MessageType):
    name = "string"

    def encode(self, value):
        return value.encode("utf-8")

    def decode(self, buffer):
        return bytes(buffer).decode("utf-8")


class _Scalar(MessageType):
    def __init__(self, name, fmt):
        self.name = name
        self._struct = struct.Struct("=" + fmt)

    def encode(self, value):
        return self._struct.pack(value)

    def decode(self, buffer):
        if len(buffer) != self._struct.size:
            raise ValueError("a message of %d bytes is not a %s" % (len(buffer), self.name))
        return self._struct.unpack(buffer)[0]


class Raw(MessageType):
    """Any registry type, carried as raw bytes: take() gives bytes, publish() takes bytes-like."""

    def __init__(self, name):
        self.name = name

    def encode(self, value):
        return value

    def decode(self, buffer):
        return bytes(buffer)


_HEADER = struct.Struct("<4sHHII")
_MAGIC = b"FNDA"


def _align(n, to=64):
    return (n + to - 1) // to * to


class ArrayType(MessageType):
    """NumPy arrays with dtype and shape (the "ndarray" layout in this module's docstring)."""

    name = "ndarray"

    @staticmethod
    def header(dtype, shape):
        import numpy

        dt = numpy.dtype(dtype).str.encode("ascii")
        offset = _align(_HEADER.size + 8 * len(shape) + len(dt))
        head = _HEADER.pack(_MAGIC, len(shape), len(dt), offset, 0) + struct.pack("<%dQ" % len(shape), *shape) + dt
        return head + b"\0" * (offset - len(head)), offset

    def encode(self, value):
        import numpy

        a = numpy.asarray(value, order="C")
        head, _ = self.header(a.dtype, a.shape)
        return head + a.tobytes()

    @staticmethod
    def parse(buffer):
        """(dtype, shape, data offset) of an "ndarray" message."""
        mv = memoryview(buffer)
        if len(mv) < _HEADER.size:
            raise ValueError("a message of %d bytes is not an ndarray" % len(mv))
        magic, ndim, dlen, offset, _ = _HEADER.unpack_from(mv, 0)
        if magic != _MAGIC:
            raise ValueError("not an ndarray message (bad magic)")
        end = _HEADER.size + 8 * ndim + dlen
        if end > offset or offset > len(mv):
            raise ValueError("a damaged ndarray header")
        shape = struct.unpack_from("<%dQ" % ndim, mv, _HEADER.size)
        dtype = bytes(mv[_HEADER.size + 8 * ndim:end]).decode("ascii")
        return dtype, shape, offset

    def view(self, buffer):
        """The array in place (no copy), read-only when the buffer is."""
        import numpy

        dtype, shape, offset = self.parse(buffer)
        dt = numpy.dtype(dtype)
        count = 1
        for n in shape:
            count *= n
        if offset + count * dt.itemsize != len(memoryview(buffer)):
            raise ValueError("ndarray message: the data does not match dtype %s and shape %s" % (dtype, shape))
        return numpy.frombuffer(buffer, dtype=dt, count=count, offset=offset).reshape(shape)

    def decode(self, buffer):
        return self.view(buffer).copy()


NDARRAY = ArrayType()

_BUILTIN = {
    "bytes": _Bytes(),
    "string": _String(),
    "bool": _Scalar("bool", "?"),
    "int8": _Scalar("int8", "b"),
    "int16": _Scalar("int16", "h"),
    "int32": _Scalar("int32", "i"),
    "int64": _Scalar("int64", "q"),
    "uint8": _Scalar("uint8", "B"),
    "uint16": _Scalar("uint16", "H"),
    "uint32": _Scalar("uint32", "I"),
    "uint64": _Scalar("uint64", "Q"),
    "float32": _Scalar("float32", "f"),
    "float64": _Scalar("float64", "d"),
    "ndarray": NDARRAY,
}

_PY_TYPES = {bytes: "bytes", bytearray: "bytes", str: "string", bool: "bool", int: "int64", float: "float64"}

_registered = {}  # names from loaded type-support modules


def by_name(name):
    """The message type called `name`, or None."""
    return _BUILTIN.get(name) or _registered.get(name)


def resolve(type):
    """A MessageType from what a user passes as type=: a MessageType, a Python type, a NumPy type or
    dtype-like (meaning ndarray), or a registry name."""
    if isinstance(type, MessageType):
        return type
    if type in _PY_TYPES:
        return _BUILTIN[_PY_TYPES[type]]
    if isinstance(type, str):
        t = by_name(type)
        if t is None:
            raise ValueError("unknown message type %r (load its type-support module with ferry.load_types, "
                             "or use ferry.Raw(%r) for raw bytes)" % (type, type))
        return t
    try:
        import numpy

        if type is numpy.ndarray:
            return NDARRAY
    except ImportError:
        pass
    raise TypeError("type= must be bytes, str, int, float, bool, numpy.ndarray, a type name or a ferry type, "
                    "not %r" % (type,))


_SINK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t)
_ABI_VERSION = 1


class _Structured(MessageType):
    """A type of a FERRY_TYPE module: dict in Python, the cereal encoding C++ uses on the wire."""

    def __init__(self, module, name):
        self._module = module
        self.name = name
        self._cname = name.encode("utf-8")

    def decode(self, buffer):
        data = bytes(buffer)
        return json.loads(self._module._call(self._module._to_json, self._cname, data, len(data)))

    def encode(self, value):
        text = json.dumps(value).encode("utf-8")
        return self._module._call(self._module._from_json, self._cname, text, len(text), raw=True)


class TypeSupport:
    """A loaded type-support module (see <ferry/type_support.hpp>): .types maps names to types."""

    def __init__(self, path):
        self.path = path
        lib = ctypes.CDLL(path)
        try:
            version = lib.ferry_type_support_abi_version
            count = lib.ferry_type_support_count
            name = lib.ferry_type_support_name
            self._to_json = lib.ferry_type_support_to_json
            self._from_json = lib.ferry_type_support_from_json
        except AttributeError as e:
            raise ValueError("cannot load type support %s: not a type-support module (%s)" % (path, e)) from None
        version.restype = ctypes.c_uint32
        if version() != _ABI_VERSION:
            raise ValueError("cannot load type support %s: ABI version %d, this ferry needs %d"
                             % (path, version(), _ABI_VERSION))
        count.restype = ctypes.c_size_t
        name.restype = ctypes.c_char_p
        name.argtypes = [ctypes.c_size_t]
        for fn in (self._to_json, self._from_json):
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, _SINK, ctypes.c_void_p]
        self._lib = lib
        self.types = {}
        for i in range(count()):
            n = name(i).decode("utf-8")
            self.types[n] = _Structured(self, n)

    def _call(self, fn, cname, data, size, raw=False):
        out = []

        def sink(_ctx, ptr, n):
            out.append(ctypes.string_at(ptr, n))

        cb = _SINK(sink)
        rc = fn(cname, data, size, cb, None)
        result = out[0] if out else b""
        if rc != 0:
            raise ValueError(result.decode("utf-8", "replace"))
        return result if raw else result.decode("utf-8")

    def __getitem__(self, name):
        return self.types[name]


def load_types(path):
    """Loads a FERRY_TYPE type-support module; its types become usable by name (type="demo/Pose")."""
    ts = TypeSupport(path)
    _registered.update(ts.types)
    return ts
