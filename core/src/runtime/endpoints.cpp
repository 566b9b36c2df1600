#include "runtime/endpoints.hpp"

#include <pthread.h>

#include <algorithm>
#include <cstring>

#include <ferry/codec.hpp>
#include <ferry/error.hpp>
#include <ferry/publisher.hpp>

#include "log/log.hpp"
#include "runtime/frame.hpp"

namespace ferry::detail {

namespace {

std::atomic<std::uint64_t> g_forks{0};
void count_fork_in_child() noexcept { g_forks.fetch_add(1, std::memory_order_relaxed); }
[[maybe_unused]] const bool g_fork_handler = ::pthread_atfork(nullptr, nullptr, &count_fork_in_child) == 0;

Error forked_error(const std::string& what, const std::string& topic) {
    return Error(Errc::invalid_argument, what + " of topic '" + topic +
                                             "' was made by the parent process before fork(): it is inert in the "
                                             "child; create a new ferry::Node in the child");
}

std::vector<transport::PeerInfo> peers_of(const std::vector<EndpointRecord>& all, const std::string& topic, Role role) {
    std::vector<transport::PeerInfo> out;
    for (const auto& e : all)
        if (e.role == role && e.topic == topic) out.push_back({e.id, e.pid, e.start_time});
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.endpoint_id < b.endpoint_id; });
    return out;
}

// Publish time on the wall clock (CLOCK_REALTIME): the one clock that processes in other time
// namespaces (containers) and recorders (MCAP's publish_time) agree on. Never used as a deadline.
std::int64_t wall_clock_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void check_topic_name(const std::string& topic) {
    const bool ok = !topic.empty() && topic.size() < 192 && std::all_of(topic.begin(), topic.end(), [](char c) {
        return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
    });
    if (!ok)
        throw Error(Errc::invalid_argument,
                    "topic name '" + topic + "' is not valid: use 1 to 191 printable ASCII characters, no spaces");
}

// The transport and message size an endpoint was built for are those the registry holds.
bool same_carrier(const Qos& registered, const Qos& used) {
    return registered.transport == used.transport && registered.max_message_size == used.max_message_size;
}

// Runs `once` until an endpoint is made: it returns nullptr when the topic appeared with
// another transport between look-up and registration, and the next try follows the registry.
template <class Core, class Once>
std::shared_ptr<Core> create_following_races(const EndpointSpec& spec, Once once) {
    for (int attempt = 0; attempt < 3; ++attempt)
        if (auto core = once()) return core;
    throw Error(Errc::internal, "topic '" + spec.topic + "' keeps changing transport under us; giving up");
}

}  // namespace

transport::TopicParams make_params(const EndpointSpec& spec, const Qos& qos, std::uint64_t id) {
    transport::TopicParams params;
    params.domain = spec.participant->domain();
    params.topic = spec.topic;
    params.runtime_dir = spec.participant->runtime_dir();
    params.endpoint_id = id;
    params.depth = qos.depth;
    params.overflow = to_transport(qos.overflow);
    params.max_message_size = qos.max_message_size + kFrameHeaderSize;
    params.block_timeout = qos.block_timeout;
    params.mode = qos.mode;
    // An endpoint that follows an existing topic's other depth did not ask for that depth itself:
    // like the built-in default, it may get what the system allows.
    params.depth_explicit = spec.depth_explicit && spec.qos.depth == qos.depth;
    params.reader_buffer_budget = qos.reader_buffer_budget;
    params.wait = qos.wait == "sleep"  ? transport::TopicParams::Wait::sleep
                  : qos.wait == "spin" ? transport::TopicParams::Wait::spin
                                       : transport::TopicParams::Wait::adaptive;
    params.spin = std::chrono::microseconds(qos.spin_us);
    if (const auto it = spec.plugin_options.find(qos.transport); it != spec.plugin_options.end()) params.options = it->second;
    params.node = spec.node;
    params.type = spec.type;
    return params;
}

std::uint64_t fork_generation() noexcept { return g_forks.load(std::memory_order_relaxed); }

Qos agree_with_registry(const EndpointSpec& spec, std::optional<TopicRecord>* found) {
    check_topic_name(spec.topic);
    auto existing = spec.participant->registry().find_topic(spec.topic);
    if (found) *found = existing;
    if (!existing) return spec.qos;
    if (!spec.type.empty() && existing->type != spec.type)
        throw Error(Errc::invalid_argument, "type mismatch on topic '" + spec.topic + "': it carries '" +
                                                existing->type + "', this endpoint uses '" + spec.type + "'");
    if (spec.transport_explicit && existing->qos.transport != spec.qos.transport)
        throw Error(Errc::invalid_argument, "transport conflict on topic '" + spec.topic + "': it is carried by '" +
                                                existing->qos.transport + "', but " + spec.where + " selects '" +
                                                spec.qos.transport + "'");
    Qos qos = existing->qos;
    // What is per endpoint comes from this endpoint's config, not from the topic's creator.
    qos.linger = spec.qos.linger;
    qos.max_held_samples = spec.qos.max_held_samples;
    qos.wait = spec.qos.wait;
    qos.spin_us = spec.qos.spin_us;
    return qos;
}

// ---------------------------------------------------------------------------------------------
// Publisher

std::shared_ptr<PublisherCore> PublisherCore::create(const EndpointSpec& spec) {
    return create_following_races<PublisherCore>(spec, [&] { return create_once(spec); });
}

std::shared_ptr<PublisherCore> PublisherCore::create_once(const EndpointSpec& spec) {
    auto core = std::make_shared<PublisherCore>();
    core->fork_generation_ = fork_generation();
    core->participant_ = spec.participant;
    core->topic_ = spec.topic;
    core->type_ = spec.type;
    core->type_hash_ = type_hash(spec.type);
    core->qos_ = agree_with_registry(spec);
    core->lib_ = load_transport(core->qos_.transport);
    core->id_ = spec.participant->next_endpoint_id();
    auto& t = core->lib_->get();
    const auto params = make_params(spec, core->qos_, core->id_);
    if (auto st = t.validate(params); !st)
        throw Error(to_public(st.code()), "cannot advertise '" + spec.topic + "' on " + t.name() + ": " + st.message());
    if (auto st = t.create_writer(params, core->writer_); !st)
        throw Error(to_public(st.code()), "cannot advertise '" + spec.topic + "' on " + t.name() + ": " + st.message());
    TopicRecord wanted{spec.topic, spec.type, core->qos_, 0};
    auto added = spec.participant->registry().add_endpoint(wanted, spec.transport_explicit, Role::publisher, core->id_, spec.node);
    if (!added.ok) throw Error(Errc::invalid_argument, "cannot advertise '" + spec.topic + "': " + added.error);
    if (!same_carrier(added.topic.qos, core->qos_)) {
        // Another process created the topic between our look-up and our registration.
        spec.participant->registry().remove_endpoint(core->id_);
        return nullptr;
    }
    core->registered_ = true;
    core->counters_ = added.counters;
    spec.participant->add(core.get());
    spec.participant->sync_now(*core);
    return core;
}

PublisherCore::~PublisherCore() {
    if (inherited_by_fork(fork_generation_)) {
        // The writer and its registry entry are the parent's: touch neither.
        (void)writer_.release();
        return;
    }
    if (registered_ && writer_) {
        // Still registered, so that a subscriber that has not attached yet still can.
        const Status st = flush(qos_.linger);
        if (!st) log_warn("publisher of '" + topic_ + "' closed after linger_ms " + std::to_string(qos_.linger.count()) +
                          " with messages undelivered: " + st.message());
    }
    if (registered_) {
        participant_->remove(this);
        try {
            participant_->registry().remove_endpoint(id_);
        } catch (const std::exception& e) {
            log_warn(std::string("unregistering a publisher: ") + e.what());
        }
    }
    writer_.reset();
}

void PublisherCore::sync_peers(const std::vector<EndpointRecord>& all) noexcept {
    {
        std::lock_guard<std::mutex> lock(sync_mu_);
        writer_->sync_readers(peers_of(all, topic_, Role::subscriber));
    }
    readers_changed_.notify_all();
}

bool PublisherCore::wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(sync_mu_);
    return readers_changed_.wait_for(lock, timeout, [&] { return writer_->reader_count() >= n; });
}

Status PublisherCore::flush(std::chrono::milliseconds timeout) {
    if (inherited_by_fork(fork_generation_)) return Status(Errc::invalid_argument, forked_error("a publisher", topic_).what());
    std::lock_guard<std::mutex> lock(use_mu_);
    return to_public(writer_->flush(transport::Clock::now() + timeout));
}

Status PublisherCore::loan(std::size_t size, RawLoan& out) {
    if (inherited_by_fork(fork_generation_)) return Status(Errc::invalid_argument, forked_error("a publisher", topic_).what());
    if (size > qos_.max_message_size)
        return Status(Errc::too_large, "message of " + std::to_string(size) + " bytes exceeds max_message_size " +
                                           std::to_string(qos_.max_message_size) + " of topic '" + topic_ + "'");
    transport::LoanBuffer buf;
    std::lock_guard<std::mutex> lock(use_mu_);
    if (auto st = writer_->loan(size + kFrameHeaderSize, buf); !st) return to_public(st);
    out.core_ = shared_from_this();
    out.buffer_ = buf.data;
    out.capacity_ = buf.capacity;
    out.handle_ = buf.handle;
    out.payload_ = buf.data + kFrameHeaderSize;
    out.size_ = size;
    return Status::ok();
}

Status PublisherCore::commit(RawLoan& loan, std::size_t used) {
    transport::LoanBuffer buf{loan.buffer_, loan.capacity_, loan.handle_};
    loan.payload_ = nullptr;
    if (inherited_by_fork(fork_generation_)) return Status(Errc::invalid_argument, forked_error("a publisher", topic_).what());
    std::lock_guard<std::mutex> lock(use_mu_);
    if (used > loan.size_) {
        writer_->release(buf);
        return Status(Errc::invalid_argument, "publish(used): more bytes than were loaned");
    }
    FrameHeader h{};
    h.magic = kFrameMagic;
    h.version = kFrameVersion;
    h.payload_size = used;
    h.sequence = ++sequence_;
    h.publisher_id = id_;
    h.timestamp_ns = wall_clock_ns();
    h.type_hash = type_hash_;
    std::memcpy(buf.data, &h, sizeof h);
    const Status st = to_public(writer_->commit(buf, used + kFrameHeaderSize));
    if (st.code() != Errc::too_large && st.code() != Errc::invalid_argument && counters_.messages) {
        // This endpoint is their one writer (under use_mu_): no read-modify-write needed.
        counters_.messages->store(counters_.messages->load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        counters_.bytes->store(counters_.bytes->load(std::memory_order_relaxed) + used, std::memory_order_relaxed);
        if (!st && counters_.undelivered) counters_.undelivered->store(writer_->undelivered(), std::memory_order_relaxed);
    }
    return st;
}

void PublisherCore::release(RawLoan& loan) noexcept {
    transport::LoanBuffer buf{loan.buffer_, loan.capacity_, loan.handle_};
    loan.payload_ = nullptr;
    if (inherited_by_fork(fork_generation_)) return;
    std::lock_guard<std::mutex> lock(use_mu_);
    writer_->release(buf);
}

// ---------------------------------------------------------------------------------------------
// Subscriber

std::shared_ptr<SubscriberCore> SubscriberCore::create(const EndpointSpec& spec, Callback callback) {
    return create_following_races<SubscriberCore>(spec, [&] { return create_once(spec, callback); });
}

std::shared_ptr<SubscriberCore> SubscriberCore::create_once(const EndpointSpec& spec, const Callback& callback) {
    auto core = std::make_shared<SubscriberCore>();
    core->participant_ = spec.participant;
    core->topic_ = spec.topic;
    std::optional<TopicRecord> existing;
    core->qos_ = agree_with_registry(spec, &existing);
    core->qos_.reader_buffer_budget = spec.qos.reader_buffer_budget;  // ours, not the topic's
    core->type_ = spec.type;
    if (spec.type.empty()) {
        if (!existing)
            throw Error(Errc::invalid_argument, "topic '" + spec.topic + "' does not exist in domain " +
                                                    spec.participant->domain());
        core->type_ = existing->type;
    } else {
        core->type_hash_ = type_hash(spec.type);
    }
    auto box = std::make_shared<ReaderBox>();
    box->fork_generation = fork_generation();
    box->lib = load_transport(core->qos_.transport);
    core->id_ = spec.participant->next_endpoint_id();
    auto& t = box->lib->get();
    const auto params = make_params(spec, core->qos_, core->id_);
    if (auto st = t.validate(params); !st)
        throw Error(to_public(st.code()), "cannot subscribe to '" + spec.topic + "' on " + t.name() + ": " + st.message());
    if (auto st = t.create_reader(params, box->reader); !st)
        throw Error(to_public(st.code()), "cannot subscribe to '" + spec.topic + "' on " + t.name() + ": " + st.message());
    core->box_ = std::move(box);
    TopicRecord wanted{spec.topic, spec.type, core->qos_, 0};
    auto added = spec.participant->registry().add_endpoint(wanted, spec.transport_explicit, Role::subscriber, core->id_,
                                                           spec.node, core->box_->lib->get().capabilities().max_readers);
    if (!added.ok) throw Error(Errc::invalid_argument, "cannot subscribe to '" + spec.topic + "': " + added.error);
    if (!same_carrier(added.topic.qos, core->qos_)) {
        spec.participant->registry().remove_endpoint(core->id_);
        return nullptr;
    }
    core->registered_ = true;
    spec.participant->add(core.get());
    spec.participant->sync_now(*core);
    if (callback) {
        SubscriberCore* raw = core.get();
        core->callback_thread_ = std::thread([raw, cb = callback]() mutable { raw->run_callbacks(std::move(cb)); });
    }
    return core;
}

void ReaderBox::release(transport::SampleBuffer& sb) noexcept {
    if (inherited_by_fork(fork_generation)) return;
    reader->release(sb);
    // seq_cst both here and in the waiter (which counts itself in before it checks `held`):
    // either it sees this release, or this sees it and wakes it.
    held.fetch_sub(1, std::memory_order_seq_cst);
    if (held_waiters.load(std::memory_order_seq_cst) == 0) return;
    std::lock_guard<std::mutex> lock(held_mu);
    held_cv.notify_all();
}

ReaderBox::~ReaderBox() {
    if (inherited_by_fork(fork_generation))
        (void)reader.release();  // the parent's: its OS objects are not the child's to remove
    else
        reader.reset();
}

SubscriberCore::~SubscriberCore() {
    if (box_ && inherited_by_fork(box_->fork_generation)) {
        // The callback thread did not survive fork(); the registry entry is the parent's.
        if (callback_thread_.joinable()) new std::thread(std::move(callback_thread_));  // NOLINT: leaked on purpose
        return;
    }
    stopping_.store(true);
    if (box_) {
        std::lock_guard<std::mutex> lock(box_->held_mu);
        box_->held_cv.notify_all();
    }
    if (box_) box_->reader->interrupt();
    if (callback_thread_.joinable()) {
        if (callback_thread_.get_id() == std::this_thread::get_id())
            callback_thread_.detach();  // dropped from inside its own callback
        else
            callback_thread_.join();
    }
    if (registered_) {
        participant_->remove(this);
        try {
            participant_->registry().remove_endpoint(id_);
        } catch (const std::exception& e) {
            log_warn(std::string("unregistering a subscriber: ") + e.what());
        }
    }
}

void SubscriberCore::sync_peers(const std::vector<EndpointRecord>& all) noexcept {
    std::lock_guard<std::mutex> lock(sync_mu_);
    auto writers = peers_of(all, topic_, Role::publisher);
    publishers_.store(writers.size());
    box_->reader->sync_writers(writers);
}

RawSample SubscriberCore::take(transport::Clock::time_point deadline, bool blocking, std::chrono::nanoseconds timeout) {
    RawSample s;
    if (inherited_by_fork(box_->fork_generation)) {
        s.status_ = Status(Errc::invalid_argument, forked_error("a subscriber", topic_).what());
        return s;
    }
    // The common empty answers: messages short enough not to allocate (a polling loop makes many).
    const auto nothing = [&] {
        s.status_ = blocking ? Status(Errc::timeout, "nothing arrived") : Status(Errc::would_block, "nothing queued");
        return std::move(s);
    };
    const auto until = [&] {
        if (timeout.count() >= 0) {
            deadline = transport::Clock::now() + timeout;
            timeout = std::chrono::nanoseconds(-1);
        }
        return deadline;
    };
    std::unique_lock<std::timed_mutex> lock(take_mu_, std::defer_lock);
    if (!lock.try_lock() && (!blocking || !lock.try_lock_until(until())))
        return nothing();  // another thread is taking and nothing came for us meanwhile
    if (box_->held.load(std::memory_order_acquire) >= qos_.max_held_samples) {
        s.status_ = Status(Errc::no_resources, "subscriber of '" + topic_ + "' already holds " +
                                                   std::to_string(qos_.max_held_samples) +
                                                   " samples (max_held_samples): drop one before taking another");
        return s;
    }
    while (true) {
        transport::SampleBuffer sb;
        // What is queued first; only then the clock, and a wait.
        transport::Status st = box_->reader->take(sb, transport::Clock::time_point::min());
        if (!st && blocking && st.code() == transport::Errc::would_block) st = box_->reader->take(sb, until());
        if (!st) {
            // A deadline that passed while we waited for the lock makes the transport poll.
            if (st.code() == transport::Errc::timeout || st.code() == transport::Errc::would_block)
                return nothing();
            if (st.code() != transport::Errc::closed) log_warn("take on '" + topic_ + "': " + st.message());
            s.status_ = to_public(st);
            return s;
        }
        FrameHeader h;
        std::string why;
        if (!decode_frame(sb.data, sb.size, type_hash_, h, why)) {
            box_->reader->release(sb);
            box_->corrupt.fetch_add(1);
            log_warn("dropped a message on '" + topic_ + "': " + why);
            continue;
        }
        box_->held.fetch_add(1, std::memory_order_acq_rel);
        s.box_ = box_;
        s.buffer_ = sb.data;
        s.buffer_size_ = sb.size;
        s.handle_ = sb.handle;
        s.payload_ = sb.data + kFrameHeaderSize;
        s.info_.sequence = h.sequence;
        s.info_.publisher_id = h.publisher_id;
        s.info_.timestamp_ns = h.timestamp_ns;
        s.info_.size = static_cast<std::size_t>(h.payload_size);
        return s;
    }
}

void SubscriberCore::run_callbacks(Callback callback) {
    std::uint64_t failures = 0;
    while (!stopping_.load()) {
        RawSample s = take(transport::Clock::now() + std::chrono::hours(24), true);
        if (!s) {
            if (stopping_.load()) return;
            const Errc code = s.status().code();
            if (code == Errc::timeout) continue;
            // The callback kept samples (moved them out), or the transport failed: wait until a
            // sample comes back or, for a failure, a short back-off passes; a stop ends either.
            if (code != Errc::no_resources && failures++ % 1000 == 0)
                log_error("callback subscriber of '" + topic_ + "': " + s.status().message());
            box_->held_waiters.fetch_add(1, std::memory_order_seq_cst);
            {
                std::unique_lock<std::mutex> lock(box_->held_mu);
                if (code == Errc::no_resources)
                    box_->held_cv.wait(lock, [&] { return stopping_.load() || box_->held.load() < qos_.max_held_samples; });
                else
                    box_->held_cv.wait_for(lock, std::chrono::milliseconds(10), [&] { return stopping_.load(); });
            }
            box_->held_waiters.fetch_sub(1, std::memory_order_relaxed);
            continue;
        }
        failures = 0;
        try {
            callback(s);
        } catch (const std::exception& e) {
            log_error("callback on '" + topic_ + "' threw: " + e.what());
        }
    }
}

}  // namespace ferry::detail

// ---------------------------------------------------------------------------------------------
// Public handles

namespace ferry {

RawLoan::RawLoan(RawLoan&& o) noexcept { *this = std::move(o); }

RawLoan& RawLoan::operator=(RawLoan&& o) noexcept {
    if (this != &o) {
        if (payload_ && core_) core_->release(*this);
        core_ = std::move(o.core_);
        payload_ = std::exchange(o.payload_, nullptr);
        size_ = o.size_;
        buffer_ = o.buffer_;
        capacity_ = o.capacity_;
        handle_ = o.handle_;
        status_ = std::move(o.status_);
    }
    return *this;
}

RawLoan::~RawLoan() {
    if (payload_ && core_) core_->release(*this);
}

Status RawLoan::publish(std::size_t used) {
    if (!payload_ || !core_) return Status(Errc::invalid_argument, "publish on an empty or already published loan");
    auto core = std::move(core_);
    return core->commit(*this, used);
}

RawSample::RawSample(RawSample&& o) noexcept { *this = std::move(o); }

RawSample& RawSample::operator=(RawSample&& o) noexcept {
    if (this != &o) {
        if (box_) {
            transport::SampleBuffer sb{buffer_, buffer_size_, handle_};
            box_->release(sb);
        }
        box_ = std::move(o.box_);
        payload_ = o.payload_;
        info_ = o.info_;
        buffer_ = o.buffer_;
        buffer_size_ = o.buffer_size_;
        handle_ = o.handle_;
        status_ = std::move(o.status_);
        counted_corrupt_ = o.counted_corrupt_;
    }
    return *this;
}

RawSample::~RawSample() {
    if (box_) {
        transport::SampleBuffer sb{buffer_, buffer_size_, handle_};
        box_->release(sb);
    }
}

void RawSample::count_corrupt() const noexcept {
    if (!box_ || counted_corrupt_) return;
    counted_corrupt_ = true;
    box_->corrupt.fetch_add(1);
}

Status RawPublisher::publish(const void* data, std::size_t size) {
    RawLoan l = loan(size);
    if (!l) return l.status();
    if (size) std::memcpy(l.data(), data, size);
    return l.publish();
}

RawLoan RawPublisher::loan(std::size_t size) {
    RawLoan l;
    if (!core_) {
        l.status_ = Status(Errc::invalid_argument, "loan on an empty publisher handle");
        return l;
    }
    if (Status st = core_->loan(size, l); !st) l.status_ = std::move(st);
    return l;
}

Status RawPublisher::flush(std::chrono::milliseconds timeout) { return core_->flush(timeout); }
std::size_t RawPublisher::subscriber_count() const { return core_->subscriber_count(); }
bool RawPublisher::wait_for_subscribers(std::size_t n, std::chrono::milliseconds timeout) const {
    return core_->wait_for_subscribers(n, timeout);
}
const std::string& RawPublisher::topic() const { return core_->topic(); }
const std::string& RawPublisher::type_name() const { return core_->type(); }
const Qos& RawPublisher::qos() const { return core_->qos(); }
std::uint64_t RawPublisher::id() const { return core_->endpoint_id(); }

RawSample RawSubscriber::take_sample(std::chrono::nanoseconds timeout) {
    const auto capped = std::clamp(timeout, std::chrono::nanoseconds(0), std::chrono::nanoseconds(std::chrono::hours(24 * 365)));
    return core_->take(transport::Clock::time_point{}, true, capped);
}
RawSample RawSubscriber::try_take_sample() { return core_->take(transport::Clock::time_point::min(), false); }
std::uint64_t RawSubscriber::lost() const { return core_->lost(); }
std::uint64_t RawSubscriber::corrupt() const { return core_->corrupt(); }
std::size_t RawSubscriber::publisher_count() const { return core_->publisher_count(); }
const std::string& RawSubscriber::topic() const { return core_->topic(); }
const std::string& RawSubscriber::type_name() const { return core_->type(); }
const Qos& RawSubscriber::qos() const { return core_->qos(); }

Subscription& Subscription::operator=(Subscription&& o) noexcept {
    if (this != &o) {
        stop();
        core_ = std::move(o.core_);
    }
    return *this;
}
Subscription::~Subscription() { stop(); }
// The core is this handle's alone (samples keep only the reader): dropping it joins the thread.
void Subscription::stop() noexcept { core_.reset(); }
std::uint64_t Subscription::lost() const { return core_->lost(); }
std::uint64_t Subscription::corrupt() const { return core_->corrupt(); }
std::size_t Subscription::publisher_count() const { return core_->publisher_count(); }
const std::string& Subscription::topic() const { return core_->topic(); }
const std::string& Subscription::type_name() const { return core_->type(); }
const Qos& Subscription::qos() const { return core_->qos(); }

}  // namespace ferry
