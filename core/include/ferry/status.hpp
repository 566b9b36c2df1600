// How sending and receiving report failure: ferry::Status and ferry::Result<T>.
//
// ferry has one error model:
//   * Setting up (constructing a Node, advertise, subscribe) throws ferry::Error (<ferry/error.hpp>).
//   * Sending and receiving never throw. publish() and flush() return a Status; a call that
//     hands you something returns an object you test like a bool, and whose status() says why
//     it is empty: take() a Result<T>, take_sample() a Sample<T>, loan() a Loan<T> or RawLoan.
//
//   if (auto st = pub.publish(msg); !st) std::cerr << st.message() << '\n';
//   auto msg = sub.take(std::chrono::seconds(1));
//   if (msg) use(*msg);
//   else if (msg.code() != ferry::Errc::timeout) std::cerr << msg.status().message() << '\n';
//
// These types belong to the user API: the transport SDK has codes of its own, which the core
// translates, so that the SDK may change without changing this header.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <ferry/export.hpp>

namespace ferry {

enum class Errc : int {
    ok = 0,
    timeout,            // a blocking call reached its deadline with nothing to give / no room
    would_block,        // a non-blocking call (try_take, overflow = "fail") found nothing / no room
    too_large,          // the message is bigger than the topic's max_message_size
    no_resources,       // an OS or pool limit (no loan to give, max_held_samples reached, ...)
    closed,             // the endpoint was shut down or its peer is gone
    invalid_argument,   // a bad parameter, or an endpoint used in a child after fork()
    permission_denied,  // the OS refused access
    io_error,           // the transport failed (an OS call broke): not a timeout, look at the message
    unsupported,        // the transport cannot do what was asked
    internal,           // a bug in ferry or a plugin
    corrupt,            // the bytes are not a valid message of the type (Sample<T>::decode)
};

// "ok", "timeout", "would_block", ... (the enumerator's name).
FERRY_API const char* errc_name(Errc code) noexcept;

// The result of an operation that gives nothing back: a code and, on failure, a one-line
// message naming the action, the object and the reason. True when it succeeded.
class [[nodiscard]] Status {
public:
    Status() noexcept = default;  // ok
    Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}
    static Status ok() noexcept { return {}; }

    bool is_ok() const noexcept { return code_ == Errc::ok; }
    explicit operator bool() const noexcept { return is_ok(); }
    Errc code() const noexcept { return code_; }
    const std::string& message() const noexcept { return message_; }

private:
    Errc code_ = Errc::ok;
    std::string message_;
};

namespace detail {
// Throws ferry::Error(status.code(), status.message()).
[[noreturn]] FERRY_API void throw_error(const Status& status);
}  // namespace detail

// Either a T or the Status saying why there is none (like std::expected<T, Status>). Test it
// like a bool; * and -> read the value; value() throws ferry::Error when there is none.
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor): a result is its value
    // A failure; `status` must not be ok.
    Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
        if (status_.is_ok()) status_ = Status(Errc::internal, "ferry: a Result was made from an ok Status");
    }

    bool has_value() const noexcept { return value_.has_value(); }
    explicit operator bool() const noexcept { return has_value(); }

    // Undefined without a value (check first), as for std::optional.
    T& operator*() & noexcept { return *value_; }
    const T& operator*() const& noexcept { return *value_; }
    T&& operator*() && noexcept { return std::move(*value_); }
    T* operator->() noexcept { return &*value_; }
    const T* operator->() const noexcept { return &*value_; }

    // The value; throws ferry::Error(status()) when there is none.
    T& value() & {
        check();
        return *value_;
    }
    const T& value() const& {
        check();
        return *value_;
    }
    T&& value() && {
        check();
        return std::move(*value_);
    }
    template <class U>
    T value_or(U&& fallback) const& {
        return value_ ? *value_ : static_cast<T>(std::forward<U>(fallback));
    }

    // ok() when there is a value.
    const Status& status() const noexcept { return status_; }
    Errc code() const noexcept { return status_.code(); }

    // A result equals a value when it holds one equal to it.
    template <class U, class = std::enable_if_t<!std::is_same_v<std::decay_t<U>, Result>>>
    friend bool operator==(const Result& r, const U& v) {
        return r.value_ && *r.value_ == v;
    }
    template <class U, class = std::enable_if_t<!std::is_same_v<std::decay_t<U>, Result>>>
    friend bool operator!=(const Result& r, const U& v) {
        return !(r == v);
    }

private:
    void check() const {
        if (!value_) detail::throw_error(status_);
    }
    std::optional<T> value_;
    Status status_;
};

}  // namespace ferry
