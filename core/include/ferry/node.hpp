// ferry::Node: a named participant in a domain, the factory of publishers and subscribers.
//
//   ferry::Node node("talker");                       // domain from FERRY_DOMAIN (default 0)
//   auto pub = node.advertise<std::string>("chatter"); // transport from FERRY_CONFIG/ferry.toml
//   pub.publish("hello");
//   auto sub = node.subscribe<std::string>("chatter");
//   if (auto msg = sub.take(std::chrono::seconds(1))) std::cout << *msg;
//   auto cb = node.subscribe<std::string>("chatter", [](const std::string& s) { std::cout << s; });
//
// Constructing a node, advertising and subscribing throw ferry::Error with a clear message
// (malformed config with file and line, unknown transport, type mismatch, plugin refused);
// publishing and taking report a Status instead (see <ferry/status.hpp>).
// A Node may be used from several threads.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <ferry/codec.hpp>
#include <ferry/error.hpp>
#include <ferry/export.hpp>
#include <ferry/message.hpp>
#include <ferry/publisher.hpp>
#include <ferry/subscriber.hpp>

namespace ferry {

namespace detail {
class NodeImpl;
}

struct NodeOptions {
    std::optional<std::string> domain;       // else FERRY_DOMAIN, else "0"
    std::optional<std::string> config_path;  // else FERRY_CONFIG, else ./ferry.toml, else defaults
    // Every topic this node creates or joins uses this transport, whatever the config's rules
    // say; the config still gives the QoS and the plugin's table ([dds]). A topic that exists
    // with another transport is an error, as with a conflicting config. `ferry bridge` uses it
    // for its network side ("dds"). (Initialized, so that NodeOptions{domain, config} stays
    // free of -Wmissing-field-initializers.)
    std::optional<std::string> transport = std::nullopt;
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

    // A publisher of T on `topic` (created in the registry if new). Throws ferry::Error.
    template <class T>
    Publisher<T> advertise(const std::string& topic) {
        return Publisher<T>(advertise_raw(topic, type_name<T>()));
    }

    // A subscriber pulling T from `topic` (which may not exist yet). Throws ferry::Error.
    template <class T>
    Subscriber<T> subscribe(const std::string& topic) {
        return Subscriber<T>(subscribe_raw(topic, type_name<T>()));
    }

    // Runs `callback(const T&)`, or `callback(const T&, const MessageInfo&)`, on a thread of the
    // returned Subscription, one message at a time, until the Subscription is dropped. A message
    // that does not decode is skipped and counted in corrupt(); an exception thrown by the
    // callback is logged. Throws ferry::Error.
    template <class T, class F>
    Subscription subscribe(const std::string& topic, F&& callback) {
        static_assert(std::is_invocable_v<F&, const T&> || std::is_invocable_v<F&, const T&, const MessageInfo&>,
                      "subscribe<T>(topic, callback): callback(const T&) or callback(const T&, const MessageInfo&)");
        return subscribe_raw(topic, type_name<T>(), [cb = std::forward<F>(callback)](RawSample& s) mutable {
            auto v = detail::decode_sample<T>(s);
            if (!v) return;
            if constexpr (std::is_invocable_v<F&, const T&, const MessageInfo&>)
                cb(*v, s.info());
            else
                cb(*v);
        });
    }

    // Untyped endpoints. `type` is recorded in the registry; an empty type on subscribe_raw
    // accepts whatever type the topic carries (tools use this). The raw callback may move the
    // sample out to keep it (at most max_held_samples at once).
    RawPublisher advertise_raw(const std::string& topic, const std::string& type);
    RawSubscriber subscribe_raw(const std::string& topic, const std::string& type);
    Subscription subscribe_raw(const std::string& topic,
                               const std::string& type,
                               std::function<void(RawSample&)> callback);

private:
    std::shared_ptr<detail::NodeImpl> impl_;
};

}  // namespace ferry
