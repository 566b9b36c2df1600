"""ferry for Python: publish and subscribe next to C++ processes, on every transport.

    import ferry
    with ferry.Node("talker") as node:
        pub = node.advertise("chatter", type=str)
        pub.wait_for_subscribers(1, timeout=5)
        pub.publish("hello")

    with ferry.Node("listener") as node:
        sub = node.subscribe("chatter", type=str)
        print(sub.take(timeout=5))          # TimeoutError when nothing came
        for msg in sub:                     # until the subscriber is closed
            print(msg)

Setting up (Node, advertise, subscribe) raises ferry.Error with the C++ message; so do publish
and take when the transport fails (e.code says which ferry::Errc). A take or publish that runs
out of time raises TimeoutError. Blocking calls release the GIL and Ctrl-C interrupts them.
Message types: see ferry.types.
"""

import atexit
import inspect
import threading
import weakref

from . import _ferry
from .types import NDARRAY, ArrayType, MessageType, Raw, TypeSupport, load_types, resolve, by_name

Error = _ferry.Error
Error.__module__ = "ferry"
Sample = _ferry.Sample
Loan = _ferry.Loan

__all__ = ["Node", "Publisher", "Subscriber", "Subscription", "Error", "Sample", "Loan", "Raw", "MessageType",
           "TypeSupport", "load_types", "clean_domain"]

_live = weakref.WeakSet()  # nodes not yet closed; closed at interpreter exit
_live_lock = threading.Lock()


def clean_domain(domain):
    """Removes what crashed processes of `domain` left (OS objects, registry records)."""
    return _ferry.clean_domain(str(domain))


class _Endpoint:
    def __init__(self, node, core, mtype):
        self._core = core
        self._type = mtype
        node._endpoints.add(self)

    @property
    def topic(self):
        return self._core.topic

    @property
    def type_name(self):
        return self._core.type_name

    @property
    def type(self):
        return self._type

    @property
    def transport(self):
        return self._core.transport

    @property
    def closed(self):
        return self._core.closed

    def close(self):
        """Leaves the topic (a publisher first waits up to linger_ms for its subscribers)."""
        self._core.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Publisher(_Endpoint):
    """Made by Node.advertise."""

    @property
    def subscriber_count(self):
        return self._core.subscriber_count

    @property
    def id(self):
        return self._core.id

    def publish(self, obj):
        """Sends `obj` (converted by the topic's type) to every subscriber. NumPy arrays are written
        straight into a loaned buffer (shared memory on shm). Raises TimeoutError when a subscriber's
        queue stayed full (overflow = "block"), ferry.Error otherwise."""
        if self._type is NDARRAY:
            import numpy

            a = numpy.asarray(obj, order="C")
            with _ArrayLoan(self, a.shape, a.dtype) as dst:
                dst[...] = a
            return
        self._core.publish(self._type.encode(obj))

    def loan(self, nbytes):
        """A writable buffer of `nbytes` (inside the shared-memory segment on shm; a heap buffer
        copied once elsewhere). Fill it through memoryview / numpy.frombuffer, drop those views,
        then loan.publish() (or loan.release() to give it back). Raw bytes: the subscriber sees
        exactly these bytes."""
        return self._core.loan(nbytes)

    def loan_array(self, shape, dtype):
        """Zero copy of a NumPy array: `with pub.loan_array((h, w), "u1") as a: a[...] = ...`
        publishes at the end of the block. On an "ndarray" topic the buffer starts with the
        array header (dtype, shape); on a Raw topic it is the array's bytes only."""
        return _ArrayLoan(self, shape, dtype)

    def wait_for_subscribers(self, n=1, timeout=None):
        """True once at least `n` subscribers are connected; False when `timeout` (seconds) passed."""
        return self._core.wait_for_subscribers(n, timeout)

    def flush(self, timeout=1.0):
        """Waits until every subscriber took what was published (TimeoutError after `timeout` s)."""
        self._core.flush(timeout)


class _ArrayLoan:
    def __init__(self, pub, shape, dtype):
        import numpy

        if isinstance(shape, int):
            shape = (shape,)
        self._shape = tuple(int(n) for n in shape)
        self._dtype = numpy.dtype(dtype)
        count = 1
        for n in self._shape:
            count *= n
        nbytes = count * self._dtype.itemsize
        if pub.type is NDARRAY:
            head, offset = ArrayType.header(self._dtype, self._shape)
        else:
            head, offset = b"", 0
        self._loan = pub._core.loan(offset + nbytes)
        if head:
            mv = memoryview(self._loan)
            mv[:len(head)] = head
            mv.release()
        self._array = numpy.frombuffer(self._loan, dtype=self._dtype, count=count, offset=offset).reshape(self._shape)

    def __enter__(self):
        return self._array

    def __exit__(self, exc_type, exc, tb):
        # The `as` name outlives the block: make the array read-only, then publish. It stays
        # readable (the segment stays mapped while it lives) but no longer shows this message.
        self._array.flags.writeable = False
        self._array = None
        if exc_type is None:
            self._loan.publish(force=True)
        else:
            self._loan.release(force=True)
        return False


class _Receiving(_Endpoint):
    @property
    def lost(self):
        """Messages that never arrived (dropped by the overflow policy or in the transport)."""
        return self._core.lost

    @property
    def corrupt(self):
        """Messages that arrived damaged (a bad frame) and were dropped."""
        return self._core.corrupt

    @property
    def publisher_count(self):
        return self._core.publisher_count


class Subscriber(_Receiving):
    """Made by Node.subscribe without a callback."""

    def _decode(self, data):
        t = self._type
        if t is None:
            t = by_name(self._core.type_name) or Raw(self._core.type_name)
        return t.decode(data)

    def take(self, timeout=None):
        """The next message, converted by the topic's type. Waits up to `timeout` seconds (None:
        for ever) and raises TimeoutError when nothing came; ferry.Error when the transport failed."""
        data = self._core.take_bytes(timeout)
        if data is None:
            raise TimeoutError("no message on '%s' within %s s" % (self.topic, timeout))
        return self._decode(data)

    def try_take(self):
        """The next message, or None when none is queued. Never blocks."""
        data = self._core.try_take_bytes()
        return None if data is None else self._decode(data)

    def take_sample(self, timeout=None):
        """Zero copy: the next message as a ferry.Sample, a read-only buffer (memoryview,
        numpy.frombuffer) over the message where it lies (the shared-memory chunk on shm), valid
        until sample.release() or the end of its `with` block. TimeoutError as take()."""
        s = self._core.take(timeout)
        if s is None:
            raise TimeoutError("no message on '%s' within %s s" % (self.topic, timeout))
        return s

    def try_take_sample(self):
        return self._core.try_take()

    def view(self, sample):
        """A sample's content without copying: a read-only NumPy array on "ndarray" topics, else
        a memoryview. Drop it before the sample is released."""
        if self._type is NDARRAY or (self._type is None and self._core.type_name == "ndarray"):
            return NDARRAY.view(sample)
        return memoryview(sample)

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                return self.take()
            except Error as e:
                if getattr(e, "code", None) == "closed":
                    raise StopIteration from None
                raise
            except ValueError:
                if self._core.closed:
                    raise StopIteration from None
                raise


class Subscription(_Receiving):
    """Made by Node.subscribe with a callback: ferry's thread calls callback(msg) (or
    callback(msg, info) when it takes two arguments), holding the GIL, until close() (of the
    subscription or of its node: the node keeps it alive, so it needs no other reference)."""

    def close(self):
        self._core.close()
        node = self._node() if getattr(self, "_node", None) else None
        if node is not None:
            node._callbacks.discard(self)


def _arity(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)


class Node:
    """A participant in a domain. domain: else FERRY_DOMAIN, else "0"; config: a ferry.toml path,
    else FERRY_CONFIG, else ./ferry.toml, else defaults. As a context manager it closes every
    endpoint it made, then itself."""

    def __init__(self, name, domain=None, config=None):
        self._core = _ferry.Node(name, None if domain is None else str(domain), config)
        self._endpoints = weakref.WeakSet()
        self._callbacks = set()
        with _live_lock:
            _live.add(self)

    @property
    def name(self):
        return self._core.name

    @property
    def domain(self):
        return self._core.domain

    def transport_of(self, topic):
        """The transport `topic` resolves to under this node's config."""
        return self._core.transport_of(topic)

    def advertise(self, topic, type=bytes):
        """A Publisher of `type` on `topic`. Raises ferry.Error (e.g. a type mismatch)."""
        t = resolve(type)
        return Publisher(self, self._core.advertise(topic, t.name), t)

    def subscribe(self, topic, type=None, callback=None):
        """A Subscriber (pull) or, with `callback`, a Subscription (push). type=None accepts the
        topic's type as registered and converts built-in types (others come as bytes)."""
        t = None if type is None else resolve(type)
        name = "" if t is None else t.name
        if callback is None:
            return Subscriber(self, self._core.subscribe(topic, name), t)
        two = _arity(callback) >= 2
        holder = {}

        def on_sample(sample):
            ref = holder.get("sub")
            sub = ref() if ref is not None else None
            mt = t
            if mt is None:
                mt = by_name(sub.type_name) if sub is not None else None
                mt = mt or Raw("")
            value = mt.decode(sample.tobytes())
            info = sample.info if two else None
            sample.release()
            if two:
                callback(value, info)
            else:
                callback(value)

        sub = Subscription(self, self._core.subscribe_callback(topic, name, on_sample), t)
        holder["sub"] = weakref.ref(sub)  # no cycle through C++
        self._callbacks.add(sub)  # the node keeps it running until sub.close() or node.close()
        sub._node = weakref.ref(self)
        return sub

    @property
    def closed(self):
        return self._core.closed

    def close(self):
        """Closes every endpoint this node made, then the node."""
        for ep in list(self._endpoints):
            ep.close()
        self._callbacks.clear()
        self._core.close()
        with _live_lock:
            _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


@atexit.register
def _close_all():
    # Before the interpreter tears down: stop callback threads and leave every topic, so exit
    # neither hangs nor leaves OS objects behind.
    with _live_lock:
        nodes = list(_live)
    for node in nodes:
        try:
            node.close()
        except Exception:
            pass
