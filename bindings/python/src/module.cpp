// ferry._ferry: the C++ half of the Python binding. It wraps the untyped API (RawPublisher,
// RawSubscriber, Subscription with a raw callback) and lends Python buffers over loans and
// samples; ferry/__init__.py turns Python values into bytes and back.
//
// Rules kept here:
//   * every call that may block (publish, take, wait_for_subscribers, closing an endpoint that
//     lingers or a subscription whose callback runs) releases the GIL;
//   * blocking waits run in slices of kSlice and call PyErr_CheckSignals between them, so Ctrl-C
//     raises KeyboardInterrupt within one slice;
//   * loans and samples count the buffers they exported; release()/publish() refuse (BufferError,
//     as mmap.close() does) while a memoryview or NumPy array still points into the chunk, so no
//     Python object can outlive the memory it views.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <ferry/error.hpp>
#include <ferry/introspection.hpp>
#include <ferry/node.hpp>

namespace py = pybind11;
using namespace std::chrono;

namespace {

constexpr milliseconds kSlice{20};

// ferry.Error(message) with .code (the Errc name); created in PYBIND11_MODULE.
PyObject* g_error = nullptr;

[[noreturn]] void raise_status(const ferry::Status& st) {
    if (st.code() == ferry::Errc::timeout) {
        PyErr_SetString(PyExc_TimeoutError, st.message().c_str());
        throw py::error_already_set();
    }
    py::object exc = py::reinterpret_borrow<py::object>(g_error)(st.message());
    exc.attr("code") = ferry::errc_name(st.code());
    PyErr_SetObject(g_error, exc.ptr());
    throw py::error_already_set();
}

void check_signals() {
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

std::optional<nanoseconds> to_timeout(const std::optional<double>& seconds) {
    if (!seconds) return std::nullopt;
    if (*seconds < 0) return nanoseconds(0);
    return duration_cast<nanoseconds>(duration<double>(*seconds));
}

py::dict info_dict(const ferry::MessageInfo& i) {
    py::dict d;
    d["sequence"] = i.sequence;
    d["publisher_id"] = i.publisher_id;
    d["timestamp_ns"] = i.timestamp_ns;
    d["size"] = i.size;
    return d;
}

// ---- buffers over loans and samples ---------------------------------------------------------

struct Sample {
    ferry::RawSample s;
    int exports = 0;

    bool valid() const { return s.valid(); }
    void release() {
        if (exports > 0)
            throw py::buffer_error("cannot release a sample while " + std::to_string(exports) +
                                   " buffer(s) (memoryview, NumPy array) still use it");
        ferry::RawSample gone = std::move(s);
    }
    void check() const {
        if (!s.valid()) throw py::value_error("the sample was released");
    }
};

struct Loan {
    ferry::RawLoan l;
    int exports = 0;
    // Keeps the publisher, and so the segment the loan lies in, mapped while a view of the
    // loan may still exist (see publish(force)).
    std::shared_ptr<ferry::RawPublisher> keep;

    void check() const {
        if (!l.valid()) throw py::value_error("the loan was published or released");
    }
    void check_free(const char* what) const {
        if (exports > 0)
            throw py::buffer_error(std::string("cannot ") + what + " a loan while " + std::to_string(exports) +
                                   " buffer(s) (memoryview, NumPy array) still use it");
    }
    // force: publish although views still exist (loan_array, whose array is made read-only
    // first); the memory stays mapped, and so safe to read, as long as this object lives.
    void publish(std::optional<std::size_t> used, bool force) {
        check();
        if (!force) check_free("publish");
        const std::size_t n = used.value_or(l.size());
        if (n > l.size()) throw py::value_error("used > size of the loan");
        ferry::RawLoan taken = std::move(l);
        ferry::Status st;
        {
            py::gil_scoped_release unlocked;
            st = taken.publish(n);
        }
        if (!st) raise_status(st);
    }
    void release(bool force) {
        if (!force) check_free("release");
        ferry::RawLoan gone = std::move(l);
        if (exports == 0) keep.reset();
    }
};

template <class T>
T* self_of(PyObject* obj) {
    return py::handle(obj).cast<T*>();
}

int sample_getbuffer(PyObject* obj, Py_buffer* view, int flags) {
    try {
        Sample* self = self_of<Sample>(obj);
        if (!self->valid()) {
            PyErr_SetString(PyExc_ValueError, "the sample was released");
            view->obj = nullptr;
            return -1;
        }
        void* data = const_cast<std::byte*>(self->s.data());
        if (PyBuffer_FillInfo(view, obj, data, static_cast<Py_ssize_t>(self->s.size()), 1, flags) != 0) return -1;
        ++self->exports;
        return 0;
    } catch (...) {
        PyErr_SetString(PyExc_BufferError, "not a ferry sample");
        view->obj = nullptr;
        return -1;
    }
}

void sample_releasebuffer(PyObject* obj, Py_buffer*) {
    try {
        --self_of<Sample>(obj)->exports;
    } catch (...) {
    }
}

int loan_getbuffer(PyObject* obj, Py_buffer* view, int flags) {
    try {
        Loan* self = self_of<Loan>(obj);
        if (!self->l.valid()) {
            PyErr_SetString(PyExc_ValueError, "the loan was published or released");
            view->obj = nullptr;
            return -1;
        }
        if (PyBuffer_FillInfo(view, obj, self->l.data(), static_cast<Py_ssize_t>(self->l.size()), 0, flags) != 0)
            return -1;
        ++self->exports;
        return 0;
    } catch (...) {
        PyErr_SetString(PyExc_BufferError, "not a ferry loan");
        view->obj = nullptr;
        return -1;
    }
}

void loan_releasebuffer(PyObject* obj, Py_buffer*) {
    try {
        --self_of<Loan>(obj)->exports;
    } catch (...) {
    }
}

// ---- endpoints -------------------------------------------------------------------------------

// Endpoints are held by shared_ptr: a call blocked in one thread (GIL released) keeps its own
// reference, so close() from another thread never frees what it uses; it notices the close at
// its next slice.
//
// close() marks the endpoint closing, then (GIL released) waits a bounded time for calls blocked in
// other threads to drop their references, which they do without the GIL as soon as their slice
// ends: so closing at interpreter exit really leaves the topic, even with a daemon thread blocked
// in take() that will never get the GIL back.
using Flag = std::shared_ptr<std::atomic<bool>>;

template <class T>
void close_shared(std::shared_ptr<T>& ptr, const Flag& closing, milliseconds wait) {
    closing->store(true);
    std::shared_ptr<T> gone = std::move(ptr);
    py::gil_scoped_release unlocked;
    const auto deadline = steady_clock::now() + wait;
    while (gone.use_count() > 1 && steady_clock::now() < deadline) std::this_thread::sleep_for(milliseconds(1));
    gone.reset();
}

[[noreturn]] void raise_closed(const char* what) {
    raise_status(ferry::Status(ferry::Errc::closed, std::string("the ") + what + " was closed"));
}

struct Publisher {
    std::shared_ptr<ferry::RawPublisher> p;

    Flag closing = std::make_shared<std::atomic<bool>>(false);

    explicit Publisher(std::shared_ptr<ferry::RawPublisher> pub) : p(std::move(pub)) {}
    Publisher(Publisher&&) noexcept = default;  // leaves the source empty: its destructor does nothing
    Publisher(const Publisher&) = delete;

    std::shared_ptr<ferry::RawPublisher> get() const {
        if (!p) throw py::value_error("the publisher is closed");
        return p;
    }
    void publish(const py::object& data) {
        auto pub = get();
        Py_buffer view;
        if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) throw py::error_already_set();
        ferry::Status st;
        {
            py::gil_scoped_release unlocked;
            st = pub->publish(view.buf, static_cast<std::size_t>(view.len));
            if (closing->load()) pub.reset();
        }
        PyBuffer_Release(&view);
        if (!st) raise_status(st);
    }
    Loan loan(std::size_t size) {
        ferry::RawLoan l = get()->loan(size);
        if (!l) raise_status(l.status());
        return Loan{std::move(l), 0, p};
    }
    bool wait_for_subscribers(std::size_t n, std::optional<double> timeout) {
        auto pub = get();
        const auto t = to_timeout(timeout);
        const auto deadline = steady_clock::now() + t.value_or(nanoseconds(0));
        while (true) {
            auto slice = kSlice;
            if (t) slice = std::min(slice, duration_cast<milliseconds>(std::max(nanoseconds(0), deadline - steady_clock::now())));
            bool ok;
            {
                py::gil_scoped_release unlocked;
                ok = pub->wait_for_subscribers(n, slice);
                if (closing->load()) pub.reset();
            }
            if (ok) return true;
            check_signals();
            if (!pub) raise_closed("publisher");
            if (t && steady_clock::now() >= deadline) return false;
        }
    }
    void flush(double timeout) {
        auto pub = get();
        ferry::Status st;
        {
            py::gil_scoped_release unlocked;
            st = pub->flush(duration_cast<milliseconds>(duration<double>(std::max(0.0, timeout))));
            if (closing->load()) pub.reset();
        }
        if (!st) raise_status(st);
    }
    void close() {
        if (!p) return;
        const auto qos = p->qos();  // closing lingers up to linger_ms for subscribers
        close_shared(p, closing, qos.block_timeout + milliseconds(500));
    }
    ~Publisher() {
        if (p) {
            if (Py_IsInitialized() && PyGILState_Check()) {
                close();
            } else {
                p.reset();
            }
        }
    }
};

struct Subscriber {
    std::shared_ptr<ferry::RawSubscriber> s;

    Flag closing = std::make_shared<std::atomic<bool>>(false);

    explicit Subscriber(std::shared_ptr<ferry::RawSubscriber> sub) : s(std::move(sub)) {}
    Subscriber(Subscriber&&) noexcept = default;
    Subscriber(const Subscriber&) = delete;

    std::shared_ptr<ferry::RawSubscriber> get() const {
        if (!s) throw py::value_error("the subscriber is closed");
        return s;
    }
    // The next sample; None when `timeout` passed with nothing (timeout None: wait forever).
    std::optional<Sample> take(std::optional<double> timeout) {
        auto sub = get();
        // A sample already queued is taken without giving up the GIL: releasing and re-acquiring
        // it costs more than the take itself, and nothing here blocks.
        {
            ferry::RawSample ready = sub->try_take_sample();
            if (ready) return Sample{std::move(ready), 0};
            if (ready.status().code() != ferry::Errc::would_block) raise_status(ready.status());
        }
        const auto t = to_timeout(timeout);
        const auto deadline = steady_clock::now() + t.value_or(nanoseconds(0));
        while (true) {
            nanoseconds slice = kSlice;
            if (t) slice = std::min(slice, std::max(nanoseconds(0), deadline - steady_clock::now()));
            ferry::RawSample got;
            {
                py::gil_scoped_release unlocked;
                got = sub->take_sample(slice);
                if (!got && closing->load()) sub.reset();
            }
            if (got) return Sample{std::move(got), 0};
            if (!sub) raise_closed("subscriber");
            if (got.status().code() != ferry::Errc::timeout) raise_status(got.status());
            check_signals();
            if (!s) raise_closed("subscriber");
            if (t && steady_clock::now() >= deadline) return std::nullopt;
        }
    }
    // take() copied into bytes, the sample returned at once (the fast path for small messages).
    std::optional<py::bytes> take_bytes(std::optional<double> timeout) {
        auto got = take(timeout);
        if (!got) return std::nullopt;
        return py::bytes(reinterpret_cast<const char*>(got->s.data()), got->s.size());
    }
    std::optional<py::bytes> try_take_bytes() {
        auto got = try_take();
        if (!got) return std::nullopt;
        return py::bytes(reinterpret_cast<const char*>(got->s.data()), got->s.size());
    }
    std::optional<Sample> try_take() {
        ferry::RawSample got = get()->try_take_sample();
        if (got) return Sample{std::move(got), 0};
        if (got.status().code() != ferry::Errc::would_block) raise_status(got.status());
        return std::nullopt;
    }
    void close() {
        if (!s) return;
        close_shared(s, closing, kSlice * 10);
    }
    ~Subscriber() {
        if (s) {
            if (Py_IsInitialized() && PyGILState_Check()) close();
            else s.reset();
        }
    }
};

// The callback holder shared with the subscription's thread: cleared (under the GIL) when the
// subscription closes, so the thread never calls into a torn-down interpreter.
struct CallbackBox {
    py::object fn;
    std::atomic<bool> active{true};
};

struct Subscription {
    std::unique_ptr<ferry::Subscription> s;
    std::shared_ptr<CallbackBox> box;

    Subscription(std::unique_ptr<ferry::Subscription> sub, std::shared_ptr<CallbackBox> b)
        : s(std::move(sub)), box(std::move(b)) {}
    Subscription(Subscription&&) noexcept = default;
    Subscription(const Subscription&) = delete;

    ferry::Subscription& get() const {
        if (!s) throw py::value_error("the subscription is closed");
        return *s;
    }
    void close() {
        if (!s) return;
        box->active = false;
        std::unique_ptr<ferry::Subscription> gone = std::move(s);
        {
            py::gil_scoped_release unlocked;  // the callback thread may be waiting for the GIL
            gone.reset();
        }
        box->fn = py::object();
    }
    ~Subscription() {
        if (s) {
            if (Py_IsInitialized() && PyGILState_Check()) close();
            else s.reset();
        }
    }
};

struct Node {
    std::unique_ptr<ferry::Node> n;

    ferry::Node& get() const {
        if (!n) throw py::value_error("the node is closed");
        return *n;
    }
    Publisher advertise(const std::string& topic, const std::string& type) {
        auto& node = get();
        ferry::RawPublisher p;
        {
            py::gil_scoped_release unlocked;
            p = node.advertise_raw(topic, type);
        }
        return Publisher{std::make_shared<ferry::RawPublisher>(std::move(p))};
    }
    Subscriber subscribe(const std::string& topic, const std::string& type) {
        auto& node = get();
        ferry::RawSubscriber s;
        {
            py::gil_scoped_release unlocked;
            s = node.subscribe_raw(topic, type);
        }
        return Subscriber{std::make_shared<ferry::RawSubscriber>(std::move(s))};
    }
    Subscription subscribe_callback(const std::string& topic, const std::string& type, py::object fn) {
        auto& node = get();
        auto box = std::make_shared<CallbackBox>();
        box->fn = std::move(fn);
        std::weak_ptr<CallbackBox> weak = box;
        auto raw_cb = [weak](ferry::RawSample& sample) {
            auto b = weak.lock();
            if (!b || !b->active || !Py_IsInitialized() || _Py_IsFinalizing()) return;
            py::gil_scoped_acquire locked;
            if (!b->active || !b->fn) return;
            try {
                py::object obj = py::cast(Sample{std::move(sample), 0});
                b->fn(obj);
                // A sample the callback did not keep goes back now, not at the next GC.
                Sample& left = obj.cast<Sample&>();
                if (left.exports == 0 && obj.ref_count() == 1) left.release();
            } catch (py::error_already_set& e) {
                e.discard_as_unraisable("ferry subscription callback");
            } catch (const std::exception& e) {
                PyErr_SetString(PyExc_RuntimeError, e.what());
                PyErr_WriteUnraisable(nullptr);
            }
        };
        ferry::Subscription s;
        {
            py::gil_scoped_release unlocked;
            s = node.subscribe_raw(topic, type, raw_cb);
        }
        return Subscription{std::make_unique<ferry::Subscription>(std::move(s)), std::move(box)};
    }
    void close() {
        if (!n) return;
        std::unique_ptr<ferry::Node> gone = std::move(n);
        py::gil_scoped_release unlocked;
        gone.reset();
    }
};

}  // namespace

PYBIND11_MODULE(_ferry, m) {
    m.doc() = "ferry's C++ core (use the ferry package)";

    static py::exception<ferry::Error> error(m, "Error");
    g_error = error.ptr();
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const ferry::Error& e) {
            py::object exc = py::reinterpret_borrow<py::object>(g_error)(e.what());
            exc.attr("code") = ferry::errc_name(e.code());
            PyErr_SetObject(g_error, exc.ptr());
        }
    });

    py::class_<Sample> sample(m, "Sample", py::custom_type_setup([](PyHeapTypeObject* type) {
                                  type->as_buffer.bf_getbuffer = sample_getbuffer;
                                  type->as_buffer.bf_releasebuffer = sample_releasebuffer;
                              type->ht_type.tp_as_buffer = &type->as_buffer;
                                  type->ht_type.tp_as_buffer = &type->as_buffer;
                              }));
    sample.def_property_readonly("valid", &Sample::valid)
        .def_property_readonly("size", [](const Sample& s) { s.check(); return s.s.size(); })
        .def_property_readonly("info", [](const Sample& s) { s.check(); return info_dict(s.s.info()); })
        .def_property_readonly("address", [](const Sample& s) { s.check(); return reinterpret_cast<std::uintptr_t>(s.s.data()); })
        .def_property_readonly("exports", [](const Sample& s) { return s.exports; })
        .def("tobytes", [](const Sample& s) {
            s.check();
            return py::bytes(reinterpret_cast<const char*>(s.s.data()), s.s.size());
        })
        .def("release", &Sample::release)
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](Sample& s, py::args) { s.release(); });

    py::class_<Loan> loan(m, "Loan", py::custom_type_setup([](PyHeapTypeObject* type) {
                              type->as_buffer.bf_getbuffer = loan_getbuffer;
                              type->as_buffer.bf_releasebuffer = loan_releasebuffer;
                              type->ht_type.tp_as_buffer = &type->as_buffer;
                          }));
    loan.def_property_readonly("valid", [](const Loan& l) { return l.l.valid(); })
        .def_property_readonly("size", [](const Loan& l) { l.check(); return l.l.size(); })
        .def_property_readonly("address", [](const Loan& l) { l.check(); return reinterpret_cast<std::uintptr_t>(l.l.data()); })
        .def_property_readonly("exports", [](const Loan& l) { return l.exports; })
        .def("publish", &Loan::publish, py::arg("used") = py::none(), py::arg("force") = false)
        .def("release", &Loan::release, py::arg("force") = false)
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](Loan& l, py::args) { l.release(false); });

    py::class_<Publisher>(m, "Publisher")
        .def("publish", &Publisher::publish)
        .def("loan", &Publisher::loan)
        .def("wait_for_subscribers", &Publisher::wait_for_subscribers, py::arg("n"), py::arg("timeout") = py::none())
        .def("flush", &Publisher::flush)
        .def_property_readonly("subscriber_count", [](const Publisher& p) { return p.get()->subscriber_count(); })
        .def_property_readonly("topic", [](const Publisher& p) { return p.get()->topic(); })
        .def_property_readonly("type_name", [](const Publisher& p) { return p.get()->type_name(); })
        .def_property_readonly("transport", [](const Publisher& p) { return p.get()->qos().transport; })
        .def_property_readonly("max_message_size", [](const Publisher& p) { return p.get()->qos().max_message_size; })
        .def_property_readonly("id", [](const Publisher& p) { return p.get()->id(); })
        .def_property_readonly("closed", [](const Publisher& p) { return !p.p; })
        .def("close", &Publisher::close);

    py::class_<Subscriber>(m, "Subscriber")
        .def("take", &Subscriber::take, py::arg("timeout") = py::none())
        .def("try_take", &Subscriber::try_take)
        .def("take_bytes", &Subscriber::take_bytes, py::arg("timeout") = py::none())
        .def("try_take_bytes", &Subscriber::try_take_bytes)
        .def_property_readonly("lost", [](const Subscriber& s) { return s.get()->lost(); })
        .def_property_readonly("corrupt", [](const Subscriber& s) { return s.get()->corrupt(); })
        .def_property_readonly("publisher_count", [](const Subscriber& s) { return s.get()->publisher_count(); })
        .def_property_readonly("topic", [](const Subscriber& s) { return s.get()->topic(); })
        .def_property_readonly("type_name", [](const Subscriber& s) { return s.get()->type_name(); })
        .def_property_readonly("transport", [](const Subscriber& s) { return s.get()->qos().transport; })
        .def_property_readonly("closed", [](const Subscriber& s) { return !s.s; })
        .def("close", &Subscriber::close);

    py::class_<Subscription>(m, "Subscription")
        .def_property_readonly("lost", [](const Subscription& s) { return s.get().lost(); })
        .def_property_readonly("corrupt", [](const Subscription& s) { return s.get().corrupt(); })
        .def_property_readonly("publisher_count", [](const Subscription& s) { return s.get().publisher_count(); })
        .def_property_readonly("topic", [](const Subscription& s) { return s.get().topic(); })
        .def_property_readonly("type_name", [](const Subscription& s) { return s.get().type_name(); })
        .def_property_readonly("transport", [](const Subscription& s) { return s.get().qos().transport; })
        .def_property_readonly("closed", [](const Subscription& s) { return !s.s; })
        .def("close", &Subscription::close);

    py::class_<Node>(m, "Node")
        .def(py::init([](const std::string& name, std::optional<std::string> domain, std::optional<std::string> config) {
                 ferry::NodeOptions o;
                 o.domain = std::move(domain);
                 o.config_path = std::move(config);
                 return Node{std::make_unique<ferry::Node>(name, std::move(o))};
             }),
             py::arg("name"), py::arg("domain") = py::none(), py::arg("config") = py::none())
        .def_property_readonly("name", [](const Node& n) { return n.get().name(); })
        .def_property_readonly("domain", [](const Node& n) { return n.get().domain(); })
        .def("transport_of", [](const Node& n, const std::string& topic) { return n.get().resolve_qos(topic).transport; })
        .def("advertise", &Node::advertise)
        .def("subscribe", &Node::subscribe)
        .def("subscribe_callback", &Node::subscribe_callback)
        .def_property_readonly("closed", [](const Node& n) { return !n.n; })
        .def("close", &Node::close);

    m.def("clean_domain", [](const std::string& domain) { return ferry::clean_domain(domain); });
}
