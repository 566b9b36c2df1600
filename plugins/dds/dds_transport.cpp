#include "dds_transport.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <ferry/transport/plugin.hpp>

namespace ferry::dds {

namespace {

// The sequence<octet> length is a 32-bit count.
constexpr std::size_t kMaxMessage = 0xffffffffu;

struct QosDeleter {
    void operator()(dds_qos_t* q) const noexcept { dds_delete_qos(q); }
};
using QosPtr = std::unique_ptr<dds_qos_t, QosDeleter>;

// QoS both ends share; README.md, "QoS".
QosPtr make_qos(const TopicParams& params, bool writer) {
    QosPtr q(dds_create_qos());
    const auto block = std::chrono::duration_cast<std::chrono::nanoseconds>(params.block_timeout).count();
    dds_qset_reliability(q.get(), DDS_RELIABILITY_RELIABLE,
                         params.overflow == Overflow::fail ? 0 : static_cast<dds_duration_t>(block));
    if (params.overflow == Overflow::drop_oldest && writer) {
        dds_qset_history(q.get(), DDS_HISTORY_KEEP_LAST, static_cast<int32_t>(std::max<std::uint32_t>(params.depth, 1)));
    } else {
        // No resource limits on the reader: Cyclone DDS 0.10 loses reliable samples that a full
        // reader rejected (README.md). A reader acknowledges what it received; a writer keeps
        // what is unacknowledged and blocks (throttles) while too much is. A drop_oldest reader
        // keeps its newest `depth` itself, counting what it drops (DdsReader).
        dds_qset_history(q.get(), DDS_HISTORY_KEEP_ALL, 0);
    }
    return q;
}

std::int64_t this_pid() noexcept { return static_cast<std::int64_t>(::getpid()); }

// Keeps the shared object holding `symbol` mapped until the process ends. Cyclone's threads may
// outlive a transport, and the core unloads a plugin module (with libddsc, its dependency) at
// exit: code they run must stay.
void pin_module_of(const void* symbol) noexcept {
    Dl_info info{};
    if (::dladdr(symbol, &info) != 0 && info.dli_fname != nullptr)
        (void)::dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

}  // namespace

DdsTransport::DdsTransport(const Host& host) : host_(host) {
    pin_module_of(reinterpret_cast<const void*>(&dds_create_domain));
    pin_module_of(reinterpret_cast<const void*>(&pin_module_of));
}

DdsTransport::~DdsTransport() {
    // A fork child must not touch the parent's participant (Cyclone's threads are not there).
    if (pid_ != this_pid()) return;
    for (auto& [id, joined] : domains_) {
        dds_delete(joined.participant);
        if (joined.domain > 0) dds_delete(joined.domain);  // stops the domain's threads
    }
}

Capabilities DdsTransport::capabilities() const noexcept {
    Capabilities c;
    c.zero_copy = false;
    c.max_message_size = kMaxMessage;
    c.summary = "Eclipse Cyclone DDS: topics reach other hosts; discovery, reliability and flow control by DDS";
    c.network = true;
    return c;
}

Status DdsTransport::validate(const TopicParams& params) const noexcept {
    if (params.max_message_size > kMaxMessage)
        return Status(Errc::invalid_argument, "dds: max_message_size " + std::to_string(params.max_message_size) +
                                                  " of topic '" + params.topic + "' exceeds 4 GiB - 1");
    if (params.depth > 0x7fffffffu)
        return Status(Errc::invalid_argument, "dds: depth " + std::to_string(params.depth) + " is too large");
    return Status::ok();
}

Status DdsTransport::topic_for(const TopicParams& params, dds_entity_t& participant, dds_entity_t& topic) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mu_);
        if (!domains_.empty() && pid_ != this_pid())
            return Status(Errc::unsupported, "dds: Cyclone DDS cannot be used in a process forked after it started; "
                                             "exec a new program instead");
        const Settings wanted = Settings::from(params);
        auto it = domains_.find(wanted.domain_id);
        if (it == domains_.end()) {
            const std::string config = cyclone_config(wanted);
            const dds_entity_t domain = dds_create_domain(wanted.domain_id, config.c_str());
            // PRECONDITION_NOT_MET: this process made the domain already (the application uses
            // Cyclone itself); its settings stay.
            if (domain < 0 && domain != DDS_RETCODE_PRECONDITION_NOT_MET)
                return dds_status(domain, Errc::io_error,
                                  "cannot create DDS domain " + std::to_string(wanted.domain_id) + " with config '" + config + "'");
            const dds_entity_t p = dds_create_participant(wanted.domain_id, nullptr, nullptr);
            if (p < 0) return dds_status(p, Errc::io_error, "cannot create a participant in DDS domain " + std::to_string(wanted.domain_id));
            it = domains_.emplace(wanted.domain_id, Joined{domain > 0 ? domain : 0, p, wanted}).first;
            pid_ = this_pid();
            log(host_, LogLevel::info, "dds: joined DDS domain " + std::to_string(wanted.domain_id) + " (config '" + config + "')");
        } else if (wanted.interfaces != it->second.settings.interfaces) {
            log(host_, LogLevel::warn, "dds: topic '" + params.topic + "' asks for other interfaces than the first endpoint "
                                       "of this process in DDS domain " + std::to_string(wanted.domain_id) + "; the first ones stay");
        }
        const dds_entity_t participant_ = it->second.participant;
        const std::string name = topic_name(params.domain, params.topic);
        const dds_entity_t t = dds_create_topic(participant_, &ferry_dds_Frame_desc, name.c_str(), nullptr, nullptr);
        if (t < 0) return dds_status(t, Errc::io_error, "cannot create DDS topic '" + name + "'");
        participant = participant_;
        topic = t;
        return Status::ok();
    } catch (const std::exception& e) {
        return Status(Errc::internal, std::string("dds: ") + e.what());
    }
}

Status DdsTransport::create_writer(const TopicParams& params, std::unique_ptr<Writer>& out) noexcept {
    if (auto st = validate(params); !st) return st;
    dds_entity_t participant = 0, topic = 0;
    if (auto st = topic_for(params, participant, topic); !st) return st;
    try {
        const auto qos = make_qos(params, true);
        const dds_entity_t w = dds_create_writer(participant, topic, qos.get(), nullptr);
        if (w < 0) {
            dds_delete(topic);
            return dds_status(w, Errc::io_error, "cannot create a writer for topic '" + params.topic + "'");
        }
        out = std::make_unique<DdsWriter>(host_, params, topic, w);
        return Status::ok();
    } catch (const std::exception& e) {
        return Status(Errc::internal, std::string("dds: ") + e.what());
    }
}

Status DdsTransport::create_reader(const TopicParams& params, std::unique_ptr<Reader>& out) noexcept {
    if (auto st = validate(params); !st) return st;
    dds_entity_t participant = 0, topic = 0;
    if (auto st = topic_for(params, participant, topic); !st) return st;
    try {
        const auto qos = make_qos(params, false);
        const dds_entity_t r = dds_create_reader(participant, topic, qos.get(), nullptr);
        if (r < 0) {
            dds_delete(topic);
            return dds_status(r, Errc::io_error, "cannot create a reader for topic '" + params.topic + "'");
        }
        out = std::make_unique<DdsReader>(host_, params, participant, topic, r);
        return Status::ok();
    } catch (const std::exception& e) {
        return Status(Errc::internal, std::string("dds: ") + e.what());
    }
}

}  // namespace ferry::dds

FERRY_TRANSPORT_PLUGIN(ferry::dds::DdsTransport)
