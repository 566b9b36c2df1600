// The SDK's heap buffers, for writers and readers that copy messages (the stream and the
// fragmenting transports).
//
//   ByteBuffer  a heap buffer that is not zero-filled
//   BufferPool  a few released buffers kept for reuse (a reassembler's messages)
//   LoanPool    a writer's loans: buffers with headroom for the plugin's header before the
//               loaned bytes, reused across commits
//
// None of these types is thread-safe; each serves one writer or one receiving thread.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include <ferry/transport/transport.hpp>

namespace ferry::transport {

// A heap buffer that is not zero-filled (so a claimed size costs nothing until written).
struct ByteBuffer {
    std::unique_ptr<std::byte[]> data;
    std::size_t capacity = 0;
};

// Keeps a few released buffers so the steady state allocates nothing. acquire() may throw
// std::bad_alloc.
class BufferPool {
public:
    explicit BufferPool(std::size_t max_cached = 8) : max_cached_(max_cached) {}
    ByteBuffer acquire(std::size_t min_capacity);
    void recycle(ByteBuffer&& buffer) noexcept;

private:
    std::vector<ByteBuffer> free_;
    std::size_t max_cached_;
};

// The loans of one writer (Writer::loan/commit/release). Every loan has `headroom` writable
// bytes before LoanBuffer::data, where the plugin writes its header so that a message goes
// out without a copy. A released buffer serves the next loan; buffers grow geometrically in
// page multiples, never past headroom + `max_size` (the topic's max_message_size).
//
//   LoanPool loans(kFrameHeaderSize, params.max_message_size);
//   loans.lend(n, buf);                        // Writer::loan
//   std::byte* frame = loans.open_loan(buf);   // Writer::commit: the header goes at frame
//   loans.give_back(buf);
class LoanPool {
public:
    LoanPool(std::size_t headroom, std::size_t max_size) noexcept : headroom_(headroom), max_size_(max_size) {}

    // Lends a buffer with room for at least `size` bytes after the headroom and fills `out`
    // (its handle names the buffer). Throws std::bad_alloc.
    void lend(std::size_t size, LoanBuffer& out);
    // The start (headroom included) of the buffer of the open loan `buf`; nullptr when `buf`
    // is not an open loan of this pool.
    std::byte* open_loan(const LoanBuffer& buf) const noexcept;
    // Ends the loan `buf` (nothing to end when it is not an open loan) and clears `buf`.
    void give_back(LoanBuffer& buf) noexcept;

private:
    struct Slot {
        ByteBuffer buffer;
        bool in_use = false;
    };
    std::vector<Slot> slots_;
    std::size_t headroom_;
    std::size_t max_size_;
};

}  // namespace ferry::transport
