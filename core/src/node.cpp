#include <ferry/node.hpp>

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>

#include <ferry/error.hpp>
#include <ferry/introspection.hpp>

#include "config/config.hpp"
#include "loader/plugin_loader.hpp"
#include "runtime/endpoints.hpp"
#include "runtime/participant.hpp"

namespace ferry {

namespace detail {

std::string demangle(const char* mangled) {
    int status = 0;
    char* out = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
    std::string name = (status == 0 && out) ? out : mangled;
    std::free(out);
    return name;
}

class NodeImpl {
public:
    std::string name;
    std::string domain;
    Config config;
    std::optional<std::string> transport;  // NodeOptions::transport
    std::shared_ptr<Participant> participant;

    EndpointSpec spec(const std::string& topic, const std::string& type) const {
        const auto resolved = config.resolve(topic);
        EndpointSpec s;
        s.participant = participant;
        s.topic = topic;
        s.type = type;
        s.node = name;
        s.qos = resolved.qos;
        s.transport_explicit = resolved.transport_explicit;
        s.where = resolved.where;
        s.depth_explicit = resolved.depth_explicit;
        if (transport) {
            s.qos.transport = *transport;
            s.transport_explicit = true;
            s.where = "node '" + name + "' (NodeOptions::transport)";
        }
        s.plugin_options = config.all_plugin_options();
        return s;
    }
};

}  // namespace detail

std::string default_domain() {
    const char* env = std::getenv("FERRY_DOMAIN");
    return env && *env ? env : "0";
}

Node::Node(std::string name, NodeOptions options) : impl_(std::make_shared<detail::NodeImpl>()) {
    impl_->name = std::move(name);
    impl_->domain = detail::checked_domain(options.domain ? *options.domain : default_domain());
    impl_->config = detail::Config::load_for_node(options.config_path);
    impl_->config.check_transports(detail::available_transports());
    if (options.transport) {
        const auto available = detail::available_transports();
        if (std::find(available.begin(), available.end(), *options.transport) == available.end())
            throw Error(Errc::invalid_argument, "node '" + impl_->name + "': unknown transport '" + *options.transport + "'");
        impl_->transport = options.transport;
    }
    impl_->participant = detail::Participant::get(impl_->domain, impl_->config.defaults().mode);
}

Node::~Node() = default;
Node::Node(Node&&) noexcept = default;
Node& Node::operator=(Node&&) noexcept = default;

const std::string& Node::name() const { return impl_->name; }
const std::string& Node::domain() const { return impl_->domain; }
Qos Node::resolve_qos(const std::string& topic) const { return impl_->config.resolve(topic).qos; }

RawPublisher Node::advertise_raw(const std::string& topic, const std::string& type) {
    if (type.empty()) throw Error(Errc::invalid_argument, "advertise '" + topic + "': a publisher needs a type name");
    return RawPublisher(detail::PublisherCore::create(impl_->spec(topic, type)));
}

RawSubscriber Node::subscribe_raw(const std::string& topic, const std::string& type) {
    return RawSubscriber(detail::SubscriberCore::create(impl_->spec(topic, type), nullptr));
}

Subscription Node::subscribe_raw(const std::string& topic,
                                 const std::string& type,
                                 std::function<void(RawSample&)> callback) {
    if (!callback) throw Error(Errc::invalid_argument, "subscribe '" + topic + "': the callback is empty");
    return Subscription(detail::SubscriberCore::create(impl_->spec(topic, type), std::move(callback)));
}

}  // namespace ferry
