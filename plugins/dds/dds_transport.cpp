#include "dds_transport.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <cstring>

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
// Who the endpoint is, in its USER_DATA, for other hosts' `ferry topic list` (README.md,
// "Discovery"): "ferry/1" then key=value lines.
std::string announcement(const TopicParams& params) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    return "ferry/1\nhost=" + std::string(host) + "\npid=" + std::to_string(::getpid()) + "\nnode=" + params.node +
           "\ntype=" + params.type;
}

QosPtr make_qos(const TopicParams& params, bool writer) {
    QosPtr q(dds_create_qos());
    const std::string who = announcement(params);
    dds_qset_userdata(q.get(), who.data(), who.size());
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

Status DdsTransport::participant_for(const Settings& wanted, const std::string& topic, dds_entity_t& participant) {
    if (!domains_.empty() && pid_ != this_pid())
        return Status(Errc::unsupported, "dds: Cyclone DDS cannot be used in a process forked after it started; "
                                         "exec a new program instead");
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
        log(host_, LogLevel::warn, "dds: topic '" + topic + "' asks for other interfaces than the first endpoint "
                                   "of this process in DDS domain " + std::to_string(wanted.domain_id) + "; the first ones stay");
    }
    participant = it->second.participant;
    return Status::ok();
}

Status DdsTransport::topic_for(const TopicParams& params, dds_entity_t& participant, dds_entity_t& topic) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mu_);
        dds_entity_t participant_ = 0;
        if (auto st = participant_for(Settings::from(params), params.topic, participant_); !st) return st;
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

namespace {

// The fields of a USER_DATA written by announcement(); false when it is not ferry's.
bool parse_announcement(const std::string& text, RemoteEndpoint& e) {
    if (text.rfind("ferry/1\n", 0) != 0) return false;
    std::size_t start = 8;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(start, end - start);
        const auto eq = line.find('=');
        if (eq != std::string::npos) {
            const std::string key = line.substr(0, eq), value = line.substr(eq + 1);
            if (key == "host") e.host = value;
            else if (key == "pid") e.pid = static_cast<std::int32_t>(std::strtol(value.c_str(), nullptr, 10));
            else if (key == "node") e.node = value;
            else if (key == "type") e.type = value;
        }
        start = end + 1;
    }
    return true;
}

// Every endpoint in the built-in topic `which` (DCPSPublication or DCPSSubscription) of ferry
// domain `domain`, except those of `own` (this process's participant).
Status read_endpoints(dds_entity_t participant, dds_entity_t which, bool publishers, const std::string& domain,
                      const dds_guid_t& own, std::vector<RemoteEndpoint>& out) {
    const dds_entity_t reader = dds_create_reader(participant, which, nullptr, nullptr);
    if (reader < 0) return dds_status(reader, Errc::io_error, "cannot read DDS discovery data");
    constexpr std::size_t kBatch = 64;
    void* samples[kBatch] = {};
    dds_sample_info_t infos[kBatch];
    for (;;) {
        samples[0] = nullptr;
        const dds_return_t n = dds_read_mask(reader, samples, infos, kBatch, kBatch,
                                             DDS_NOT_READ_SAMPLE_STATE | DDS_ALIVE_INSTANCE_STATE);
        if (n < 0) {
            dds_delete(reader);
            return dds_status(n, Errc::io_error, "cannot read DDS discovery data");
        }
        if (n == 0) break;
        for (dds_return_t i = 0; i < n; ++i) {
            if (!infos[i].valid_data) continue;
            const auto* ep = static_cast<const dds_builtintopic_endpoint_t*>(samples[i]);
            if (std::memcmp(ep->participant_key.v, own.v, sizeof own.v) == 0) continue;
            RemoteEndpoint e;
            std::string d;
            if (ep->topic_name == nullptr || !parse_topic_name(ep->topic_name, d, e.topic) || d != domain) continue;
            e.publisher = publishers;
            void* data = nullptr;
            size_t size = 0;
            if (ep->qos != nullptr && dds_qget_userdata(ep->qos, &data, &size) && data != nullptr)
                parse_announcement(std::string(static_cast<const char*>(data), size), e);
            dds_free(data);
            out.push_back(std::move(e));
        }
        dds_return_loan(reader, samples, n);  // what was read is marked read: the next call goes on
    }
    dds_delete(reader);
    return Status::ok();
}

}  // namespace

Status DdsTransport::discover(const std::string& domain,
                              const std::vector<std::pair<std::string, std::string>>& options,
                              std::chrono::milliseconds wait,
                              std::vector<RemoteEndpoint>& out) noexcept {
    out.clear();
    try {
        TopicParams params;
        params.options = options;
        dds_entity_t participant = 0;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (auto st = participant_for(Settings::from(params), "", participant); !st) return st;
        }
        dds_guid_t own{};
        if (const dds_return_t rc = dds_get_guid(participant, &own); rc < 0)
            return dds_status(rc, Errc::io_error, "cannot read this participant's GUID");
        // Discovery has no end: it is given `wait` to find what is there.
        dds_sleepfor(DDS_MSECS(wait.count()));
        if (auto st = read_endpoints(participant, DDS_BUILTIN_TOPIC_DCPSPUBLICATION, true, domain, own, out); !st) return st;
        return read_endpoints(participant, DDS_BUILTIN_TOPIC_DCPSSUBSCRIPTION, false, domain, own, out);
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
