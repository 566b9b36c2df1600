// The untyped cores behind Publisher<T> and Subscriber<T>: one transport writer or reader, its
// registry entry, and the glue to the discovery thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ferry/message.hpp>
#include <ferry/qos.hpp>
#include <ferry/subscriber.hpp>
#include <ferry/transport/transport.hpp>

#include "loader/plugin_loader.hpp"
#include "runtime/participant.hpp"
#include "runtime/translate.hpp"

namespace ferry::detail {

// Everything needed to set up one endpoint.
struct EndpointSpec {
    std::shared_ptr<Participant> participant;
    std::string topic;
    std::string type;  // "" for an any-type subscriber
    std::string node;
    Qos qos;                          // from the config
    bool transport_explicit = false;  // the config chose the transport (not the built-in default)
    std::string where;                // "file:line" of that choice
    bool depth_explicit = false;      // the config set the depth (not the built-in default)
    // The config's plugin tables ([dds]) by transport name; the endpoint's transport picks its own.
    std::map<std::string, std::vector<std::pair<std::string, std::string>>> plugin_options;
};

class PublisherCore final : public Endpoint, public std::enable_shared_from_this<PublisherCore> {
public:
    static std::shared_ptr<PublisherCore> create(const EndpointSpec& spec);  // throws ferry::Error
    ~PublisherCore() override;

    // Safe from several threads at once: one writer call at a time, so that sequence numbers
    // follow commit order.
    Status loan(std::size_t size, RawLoan& out);
    Status commit(RawLoan& loan, std::size_t used);
    void release(RawLoan& loan) noexcept;
    // Waits until the subscribers took everything published so far (see Writer::flush).
    Status flush(std::chrono::milliseconds timeout);

    std::size_t subscriber_count() const noexcept { return writer_->reader_count(); }
    bool wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout);

    const std::string& topic() const noexcept { return topic_; }
    const std::string& type() const noexcept { return type_; }
    const Qos& qos() const noexcept { return qos_; }
    std::uint64_t endpoint_id() const noexcept override { return id_; }
    void sync_peers(const std::vector<EndpointRecord>& all) noexcept override;

    PublisherCore() = default;  // use create()

private:
    static std::shared_ptr<PublisherCore> create_once(const EndpointSpec& spec);  // nullptr: raced
    std::shared_ptr<Participant> participant_;
    std::shared_ptr<LoadedTransport> lib_;
    std::unique_ptr<transport::Writer> writer_;
    std::string topic_, type_;
    std::uint64_t type_hash_ = 0;
    Qos qos_;
    std::uint64_t id_ = 0;
    std::uint64_t sequence_ = 0;
    EndpointCounters counters_;
    bool registered_ = false;
    std::uint64_t fork_generation_ = 0;  // of the process that made it (see inherited_by_fork)
    std::mutex use_mu_;  // the writer is used by one thread at a time
    std::mutex sync_mu_;
    std::condition_variable readers_changed_;
};

// Counts fork()s of this process: an object made before a fork is inert in the child.
std::uint64_t fork_generation() noexcept;
inline bool inherited_by_fork(std::uint64_t made_in) noexcept { return made_in != fork_generation(); }

// Keeps a transport reader (and its module) alive while samples from it exist.
struct ReaderBox {
    std::shared_ptr<LoadedTransport> lib;  // declared first: destroyed last
    std::unique_ptr<transport::Reader> reader;
    std::uint64_t fork_generation = 0;
    // Samples handed out and not yet released, against Qos::max_held_samples.
    std::atomic<std::uint32_t> held{0};
    // Messages that arrived and were thrown away (bad frame, other type, undecodable).
    std::atomic<std::uint64_t> corrupt{0};
    std::mutex held_mu;
    std::condition_variable held_cv;
    // Threads waiting on held_cv for a release: release() takes the mutex only when there are.
    std::atomic<std::uint32_t> held_waiters{0};
    // Gives a sample's bytes back to the reader (nothing in a forked child: not ours).
    void release(transport::SampleBuffer& sb) noexcept;
    ~ReaderBox();
};

class SubscriberCore final : public Endpoint, public std::enable_shared_from_this<SubscriberCore> {
public:
    using Callback = std::function<void(RawSample&)>;
    static std::shared_ptr<SubscriberCore> create(const EndpointSpec& spec, Callback callback);  // throws
    ~SubscriberCore() override;

    // The next message, or an empty sample whose status says why. `blocking`: wait until
    // `deadline` (Errc::timeout); else poll (Errc::would_block).
    // Blocking takes wait until `deadline`, or, with a `timeout` of 0 or more, until that long
    // after the take first has to wait: a message that is ready costs no clock read.
    RawSample take(transport::Clock::time_point deadline,
                   bool blocking,
                   std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1));

    // Disjoint: lost in transit (the reader's count) vs arrived and thrown away.
    std::uint64_t lost() const noexcept { return box_->reader->lost(); }
    std::uint64_t corrupt() const noexcept { return box_->corrupt.load(); }
    std::size_t publisher_count() const noexcept { return publishers_.load(); }

    const std::string& topic() const noexcept { return topic_; }
    const std::string& type() const noexcept { return type_; }
    const Qos& qos() const noexcept { return qos_; }
    std::uint64_t endpoint_id() const noexcept override { return id_; }
    void sync_peers(const std::vector<EndpointRecord>& all) noexcept override;

    SubscriberCore() = default;  // use create()

private:
    static std::shared_ptr<SubscriberCore> create_once(const EndpointSpec& spec, const Callback& callback);
    void run_callbacks(Callback callback);

    std::shared_ptr<Participant> participant_;
    std::shared_ptr<ReaderBox> box_;
    std::string topic_, type_;
    std::uint64_t type_hash_ = 0;  // 0 = any
    Qos qos_;
    std::uint64_t id_ = 0;
    bool registered_ = false;
    std::atomic<std::size_t> publishers_{0};
    std::atomic<bool> stopping_{false};
    std::mutex sync_mu_;
    std::timed_mutex take_mu_;  // the reader takes on one thread at a time
    std::thread callback_thread_;
};

// Transport parameters for an endpoint of `topic` with `qos`.
// `spec` tells whether its config set the depth that `qos` carries.
transport::TopicParams make_params(const EndpointSpec& spec, const Qos& qos, std::uint64_t id);

// Resolves the QoS an endpoint will use (the registry's when the topic exists) and checks the
// type and transport against it; throws ferry::Error on conflict.
// `existing` receives the topic's registry record, if it has one.
Qos agree_with_registry(const EndpointSpec& spec, std::optional<TopicRecord>* existing = nullptr);

}  // namespace ferry::detail
