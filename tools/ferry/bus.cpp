#include "bus.hpp"

#include <ferry/node.hpp>

namespace ferry::cli::bus {

struct Tap::Impl {
    RawSubscriber sub;
};
struct Outlet::Impl {
    RawPublisher pub;
};
struct Bus::Impl {
    Node node;
};

Tap::Tap(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tap::~Tap() = default;
Tap::Tap(Tap&&) noexcept = default;

bool Tap::take(std::chrono::nanoseconds timeout, const OnMessage& f) {
    const RawSample s = impl_->sub.take_sample(timeout);
    if (!s) return false;  // nothing before the timeout (or the subscriber closed: status() says which)
    const auto& mi = s.info();
    f(Meta{mi.sequence, mi.publisher_id, mi.timestamp_ns}, s.data(), s.size());
    return true;
}

Held Tap::take_held(std::chrono::nanoseconds timeout) {
    Held h;
    h.sample_ = impl_->sub.take_sample(timeout);
    return h;
}

std::size_t Tap::max_held() const { return impl_->sub.qos().max_held_samples; }

std::uint64_t Tap::lost() const { return impl_->sub.lost(); }
const std::string& Tap::type() const { return impl_->sub.type_name(); }

Outlet::Outlet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Outlet::~Outlet() = default;
Outlet::Outlet(Outlet&&) noexcept = default;

bool Outlet::publish(const void* data, std::size_t size, std::string& error) {
    const Status st = impl_->pub.publish(data, size);
    if (!st) error = st.message();
    return static_cast<bool>(st);
}

bool Outlet::wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout) {
    return impl_->pub.wait_for_subscribers(n, timeout);
}

std::uint64_t Outlet::id() const { return impl_->pub.id(); }

Bus::Bus(const std::string& node_name, const std::string& domain) {
    NodeOptions o;
    o.domain = domain;
    impl_ = std::make_unique<Impl>(Impl{Node(node_name, o)});
}
Bus::~Bus() = default;

Tap Bus::tap(const std::string& topic) {
    return Tap(std::make_unique<Tap::Impl>(Tap::Impl{impl_->node.subscribe_raw(topic, "")}));
}

Outlet Bus::outlet(const std::string& topic, const std::string& type) {
    return Outlet(std::make_unique<Outlet::Impl>(Outlet::Impl{impl_->node.advertise_raw(topic, type)}));
}

}  // namespace ferry::cli::bus
