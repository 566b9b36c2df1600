#include "dds_transport.hpp"

namespace ferry::dds {

namespace {
// Writers whose sequence a reader remembers; beyond, it starts over (gaps of a few writers uncounted).
constexpr std::size_t kMaxTrackedWriters = 4096;
}  // namespace

DdsReader::DdsReader(const Host& host, const TopicParams& params, dds_entity_t participant, dds_entity_t topic,
                     dds_entity_t reader)
    : host_(host), params_(params), topic_(topic), reader_(reader) {
    waitset_ = dds_create_waitset(participant);
    readcond_ = dds_create_readcondition(reader_, DDS_ANY_STATE);
    guard_ = dds_create_guardcondition(participant);
    if (params_.overflow == Overflow::drop_oldest) {
        ring_mode_ = true;
        dds_listener_t* l = dds_create_listener(this);
        dds_lset_data_available_arg(l, &DdsReader::on_data_available, this, false);
        if (dds_set_listener(reader_, l) != DDS_RETCODE_OK)
            log(host_, LogLevel::error, "dds: cannot listen on topic '" + params_.topic + "'");
        dds_delete_listener(l);
        drain_into_ring();  // what arrived before the listener was set
    }
    if (waitset_ < 0 || readcond_ < 0 || guard_ < 0 || dds_waitset_attach(waitset_, readcond_, 0) != DDS_RETCODE_OK ||
        dds_waitset_attach(waitset_, guard_, 1) != DDS_RETCODE_OK) {
        log(host_, LogLevel::error, "dds: cannot set up waiting on topic '" + params_.topic + "'; take() will poll");
    }
}

DdsReader::~DdsReader() {
    if (ring_mode_) (void)dds_set_listener(reader_, nullptr);  // waits for a running callback
    if (waitset_ > 0) dds_delete(waitset_);
    if (guard_ > 0) dds_delete(guard_);
    dds_delete(reader_);  // and its read condition
    dds_delete(topic_);
    for (auto& s : ring_) release(s);
    for (auto& slot : slots_) dds_sample_free(&slot->frame, &ferry_dds_Frame_desc, DDS_FREE_CONTENTS);
}

DdsReader::Slot* DdsReader::free_slot() {
    std::lock_guard<std::mutex> lock(slots_mu_);
    for (auto& slot : slots_)
        if (!slot->in_use) {
            slot->in_use = true;
            return slot.get();
        }
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->in_use = true;
    return slots_.back().get();
}

void DdsReader::free(Slot* slot) noexcept {
    if (slot == nullptr) return;
    std::lock_guard<std::mutex> lock(slots_mu_);
    slot->in_use = false;
}

void DdsReader::release(SampleBuffer& sample) noexcept {
    auto* slot = reinterpret_cast<Slot*>(static_cast<std::uintptr_t>(sample.handle));
    sample = SampleBuffer{};
    free(slot);
}

void DdsReader::on_data_available(dds_entity_t, void* self) { static_cast<DdsReader*>(self)->drain_into_ring(); }

void DdsReader::drain_into_ring() noexcept {
    std::lock_guard<std::mutex> drain_lock(drain_mu_);
    for (;;) {
        SampleBuffer s;
        Status error;
        if (!try_take_one(s, error)) {
            if (!error) log(host_, LogLevel::warn, error.message());
            return;
        }
        SampleBuffer dropped;
        {
            std::lock_guard<std::mutex> lock(ring_mu_);
            ring_.push_back(s);
            if (ring_.size() > std::max<std::uint32_t>(params_.depth, 1)) {
                dropped = ring_.front();
                ring_.pop_front();
                lost_.fetch_add(1, std::memory_order_relaxed);
            }
        }
        if (dropped.handle != 0) release(dropped);
        ring_cv_.notify_one();
    }
}

Status DdsReader::take_from_ring(SampleBuffer& out, Clock::time_point deadline) noexcept {
    std::unique_lock<std::mutex> lock(ring_mu_);
    bool waited = false;
    for (;;) {
        if (interrupted_.load(std::memory_order_acquire))
            return Status(Errc::closed, "dds: reader of topic '" + params_.topic + "' interrupted");
        if (!ring_.empty()) {
            out = ring_.front();
            ring_.pop_front();
            return Status::ok();
        }
        if (Clock::now() >= deadline) {
            if (waited) return Status(Errc::timeout, "dds: no message on topic '" + params_.topic + "' before the deadline");
            return Status(Errc::would_block, "dds: no message on topic '" + params_.topic + "'");
        }
        waited = true;
        ring_cv_.wait_until(lock, deadline);
    }
}

bool DdsReader::try_take_one(SampleBuffer& out, Status& error) noexcept {
    Slot* slot = nullptr;
    try {
        slot = free_slot();
    } catch (const std::bad_alloc&) {
        error = Status(Errc::no_resources, "dds: out of memory taking from topic '" + params_.topic + "'");
        return false;
    }
    SampleBuffer held;
    held.handle = reinterpret_cast<std::uintptr_t>(slot);
    for (;;) {
        void* buf[1] = {&slot->frame};
        dds_sample_info_t info{};
        const dds_return_t n = dds_take(reader_, buf, &info, 1, 1);
        if (n < 0) {
            release(held);
            error = dds_status(n, Errc::io_error, "cannot take from topic '" + params_.topic + "'");
            return false;
        }
        if (n == 0) {
            release(held);
            return false;
        }
        if (!info.valid_data) continue;  // a writer went away: no message
        const auto& f = slot->frame;
        if (f.payload._length > params_.max_message_size) {
            lost_.fetch_add(1, std::memory_order_relaxed);
            log(host_, LogLevel::warn, "dds: dropped a message of " + std::to_string(f.payload._length) +
                                           " bytes on topic '" + params_.topic + "': over max_message_size");
            continue;
        }
        if (f.number != 0) {
            if (last_sequence_.size() >= kMaxTrackedWriters) last_sequence_.clear();
            auto& last = last_sequence_[info.publication_handle];
            if (last != 0 && f.number > last + 1) lost_.fetch_add(f.number - last - 1, std::memory_order_relaxed);
            if (f.number > last) last = f.number;
        }
        out.data = reinterpret_cast<const std::byte*>(f.payload._buffer);
        out.size = f.payload._length;
        out.handle = held.handle;
        return true;
    }
}

Status DdsReader::take(SampleBuffer& out, Clock::time_point deadline) noexcept {
    if (ring_mode_) return take_from_ring(out, deadline);
    bool waited = false;
    for (;;) {
        if (interrupted_.load(std::memory_order_acquire))
            return Status(Errc::closed, "dds: reader of topic '" + params_.topic + "' interrupted");
        Status error;
        if (try_take_one(out, error)) return Status::ok();
        if (!error) return error;
        const auto now = Clock::now();
        if (now >= deadline) {
            if (waited) return Status(Errc::timeout, "dds: no message on topic '" + params_.topic + "' before the deadline");
            return Status(Errc::would_block, "dds: no message on topic '" + params_.topic + "'");
        }
        waited = true;
        // At most an hour per wait: a far deadline must not overflow the nanosecond count.
        const auto left = std::min<Clock::duration>(deadline - now, std::chrono::hours(1));
        const dds_duration_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
        if (waitset_ > 0) {
            const dds_return_t rc = dds_waitset_wait(waitset_, nullptr, 0, ns);
            if (rc < 0) return dds_status(rc, Errc::io_error, "waiting on topic '" + params_.topic + "'");
        } else {
            dds_sleepfor(std::min<dds_duration_t>(ns, DDS_MSECS(10)));
        }
    }
}

void DdsReader::interrupt() noexcept {
    {
        std::lock_guard<std::mutex> lock(ring_mu_);
        interrupted_.store(true, std::memory_order_release);
    }
    ring_cv_.notify_all();
    if (guard_ > 0) dds_set_guardcondition(guard_, true);
}

}  // namespace ferry::dds
