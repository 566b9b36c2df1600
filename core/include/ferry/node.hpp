// ferry::Node: a named participant in a domain, the factory of publishers and subscribers.
//
//   ferry::Node node("talker");                       // domain from FERRY_DOMAIN (default 0)
//   auto pub = node.advertise<std::string>("chatter"); // transport from FERRY_CONFIG/ferry.toml
//   pub.publish("hello");
//   auto sub = node.subscribe<std::string>("chatter");
//   if (auto msg = sub.take(std::chrono::seconds(1))) std::cout << *msg;
//
// Constructing a node, advertising and subscribing throw ferry::Error with a clear message
// (malformed config with file and line, unknown transport, type mismatch, plugin refused).
// A Node may be used from several threads.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <ferry/codec.hpp>
#include <ferry/export.hpp>
#include <ferry/publisher.hpp>
#include <ferry/subscriber.hpp>

namespace ferry {

namespace detail {
class NodeImpl;
}

struct NodeOptions {
    std::optional<std::string> domain;       // else FERRY_DOMAIN, else "0"
    std::optional<std::string> config_path;  // else FERRY_CONFIG, else ./ferry.toml, else defaults
};

class FERRY_API Node {
public:
    explicit Node(std::string name, NodeOptions options = {});
    ~Node();
    Node(Node&&) noexcept;
    Node& operator=(Node&&) noexcept;

    const std::string& name() const;
    const std::string& domain() const;

    // The QoS `topic` resolves to under this node's config (ignoring the registry).
    Qos resolve_qos(const std::string& topic) const;

    template <class T>
    Publisher<T> advertise(const std::string& topic) {
        return Publisher<T>(advertise_raw(topic, type_name<T>()));
    }

    template <class T>
    Subscriber<T> subscribe(const std::string& topic) {
        return Subscriber<T>(subscribe_raw(topic, type_name<T>()));
    }

    // `callback(const T&)` runs on the subscriber's own thread, one message at a time.
    template <class T, class F>
    Subscriber<T> subscribe(const std::string& topic, F&& callback) {
        auto cb = std::forward<F>(callback);
        return Subscriber<T>(subscribe_raw(topic, type_name<T>(), [cb](RawSample& s, RawSubscriber& self) mutable {
            if (auto v = Subscriber<T>::decode(s, &self)) cb(*v);
        }));
    }

    // Untyped endpoints. `type` is recorded in the registry; an empty type on subscribe_raw
    // accepts whatever type the topic carries (tools use this).
    RawPublisher advertise_raw(const std::string& topic, const std::string& type);
    RawSubscriber subscribe_raw(const std::string& topic, const std::string& type);
    RawSubscriber subscribe_raw(const std::string& topic,
                                const std::string& type,
                                std::function<void(RawSample&, RawSubscriber&)> callback);

private:
    std::shared_ptr<detail::NodeImpl> impl_;
};

}  // namespace ferry
