#include <cstring>

#include "dds_transport.hpp"

namespace ferry::dds {

DdsWriter::DdsWriter(const Host& host, const TopicParams& params, dds_entity_t topic, dds_entity_t writer)
    : host_(host), params_(params), topic_(topic), writer_(writer) {}

DdsWriter::~DdsWriter() {
    dds_delete(writer_);
    dds_delete(topic_);
}

Status DdsWriter::loan(std::size_t size, LoanBuffer& out) noexcept {
    if (size > params_.max_message_size)
        return Status(Errc::too_large, "dds: message of " + std::to_string(size) + " bytes exceeds max_message_size " +
                                           std::to_string(params_.max_message_size) + " of topic '" + params_.topic + "'");
    try {
        // Small loans get a buffer of their own; a buffer is kept for reuse only while the sizes
        // asked for stay the same, so a stream of equal messages allocates once.
        std::unique_ptr<std::byte[]> buf;
        std::size_t capacity = size;
        if (!spare_.empty() && spare_size_ >= size) {
            buf = std::move(spare_.back());
            spare_.pop_back();
            capacity = spare_size_;
        } else {
            buf.reset(new std::byte[std::max<std::size_t>(size, 1)]);
        }
        out.data = buf.release();
        out.capacity = capacity;
        out.handle = capacity;
        return Status::ok();
    } catch (const std::bad_alloc&) {
        return Status(Errc::no_resources, "dds: cannot allocate " + std::to_string(size) + " bytes for a message on '" +
                                              params_.topic + "'");
    }
}

void DdsWriter::release(LoanBuffer& buf) noexcept {
    std::unique_ptr<std::byte[]> owned(buf.data);
    const std::size_t capacity = buf.handle;
    buf = LoanBuffer{};
    if (owned == nullptr) return;
    if (capacity != spare_size_) {
        spare_.clear();
        spare_size_ = capacity;
    }
    if (spare_.size() < 2) spare_.push_back(std::move(owned));
}

Status DdsWriter::commit(LoanBuffer& buf, std::size_t size) noexcept {
    if (size > buf.capacity) {
        release(buf);
        return Status(Errc::invalid_argument, "dds: commit of more bytes than were loaned");
    }
    ferry_dds_Frame frame{};
    frame.number = ++sequence_;
    frame.payload._buffer = reinterpret_cast<std::uint8_t*>(buf.data);
    frame.payload._length = static_cast<std::uint32_t>(size);
    frame.payload._maximum = static_cast<std::uint32_t>(size);
    frame.payload._release = false;
    const dds_return_t rc = dds_write(writer_, &frame);
    release(buf);
    if (rc == DDS_RETCODE_OK) return Status::ok();
    --sequence_;  // not sent: readers must not count it as lost
    const std::size_t readers = std::max<std::size_t>(reader_count(), 1);
    undelivered_.fetch_add(readers, std::memory_order_relaxed);
    if (rc == DDS_RETCODE_TIMEOUT) {
        if (params_.overflow == Overflow::fail)
            return Status(Errc::would_block, "dds: topic '" + params_.topic +
                                                 "': readers have not acknowledged what was sent (overflow fail)");
        return Status(Errc::timeout, "dds: topic '" + params_.topic + "': readers did not acknowledge within block_timeout " +
                                         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                            params_.block_timeout)
                                                            .count()) +
                                         " ms");
    }
    return dds_status(rc, Errc::io_error, "cannot publish on topic '" + params_.topic + "'");
}

std::size_t DdsWriter::reader_count() const noexcept {
    dds_publication_matched_status_t st{};
    if (dds_get_publication_matched_status(writer_, &st) != DDS_RETCODE_OK) return 0;
    return st.current_count;
}

Status DdsWriter::flush(Clock::time_point deadline) noexcept {
    const auto left = std::max<Clock::duration>(deadline - Clock::now(), Clock::duration::zero());
    const dds_return_t rc =
        dds_wait_for_acks(writer_, std::chrono::duration_cast<std::chrono::nanoseconds>(left).count());
    if (rc == DDS_RETCODE_OK) return Status::ok();
    if (rc == DDS_RETCODE_TIMEOUT)
        return Status(Errc::timeout, "dds: topic '" + params_.topic + "': not every one of " +
                                         std::to_string(reader_count()) + " readers acknowledged every message");
    return dds_status(rc, Errc::io_error, "flushing topic '" + params_.topic + "'");
}

}  // namespace ferry::dds
