#include <ferry/transport/buffers.hpp>

#include <algorithm>
#include <cstdint>

namespace ferry::transport {

namespace {

constexpr std::size_t kPage = 4096;

std::size_t round_to_page(std::size_t n) noexcept { return n > SIZE_MAX - (kPage - 1) ? n : (n + kPage - 1) & ~(kPage - 1); }

}  // namespace

ByteBuffer BufferPool::acquire(std::size_t min_capacity) {
    std::size_t best = free_.size();
    for (std::size_t i = 0; i < free_.size(); ++i) {
        if (free_[i].capacity >= min_capacity &&
            (best == free_.size() || free_[i].capacity < free_[best].capacity)) {
            best = i;
        }
    }
    if (best != free_.size()) {
        ByteBuffer b = std::move(free_[best]);
        free_[best] = std::move(free_.back());
        free_.pop_back();
        return b;
    }
    // Page multiples so that buffers of nearby sizes are interchangeable.
    const std::size_t cap = std::max(kPage, round_to_page(min_capacity));
    ByteBuffer b;
    b.data.reset(new std::byte[cap]);
    b.capacity = cap;
    return b;
}

void BufferPool::recycle(ByteBuffer&& buffer) noexcept {
    if (!buffer.data) return;
    if (free_.size() < max_cached_) {
        if (free_.capacity() < max_cached_) {
            try {
                free_.reserve(max_cached_);
            } catch (...) {
                return;
            }
        }
        free_.push_back(std::move(buffer));
        return;
    }
    // Full: keep the larger buffers, they serve every request.
    auto smallest = std::min_element(free_.begin(), free_.end(), [](const ByteBuffer& a, const ByteBuffer& b) {
        return a.capacity < b.capacity;
    });
    if (smallest->capacity < buffer.capacity) *smallest = std::move(buffer);
}

void LoanPool::lend(std::size_t size, LoanBuffer& out) {
    const std::size_t need = headroom_ + size;
    // A free buffer that fits, else the first free one (grown), else a new one.
    std::size_t pick = slots_.size();
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].in_use) continue;
        if (slots_[i].buffer.capacity >= need) {
            pick = i;
            break;
        }
        if (pick == slots_.size()) pick = i;
    }
    if (pick == slots_.size()) slots_.emplace_back();
    Slot& slot = slots_[pick];
    if (slot.buffer.capacity < need) {
        // Geometric growth so that a growing message size reallocates a few times only, but
        // never past what the topic allows. Not zeroed: untouched pages cost nothing.
        const std::size_t limit = max_size_ > SIZE_MAX - headroom_ ? SIZE_MAX : headroom_ + max_size_;
        std::size_t cap = round_to_page(std::max({need, 2 * slot.buffer.capacity, kPage}));
        cap = std::max(need, std::min(cap, limit));
        slot.buffer.data.reset();  // the old one goes first: peak memory is one buffer
        slot.buffer.data.reset(new std::byte[cap]);
        slot.buffer.capacity = cap;
    }
    slot.in_use = true;
    out.data = slot.buffer.data.get() + headroom_;
    out.capacity = slot.buffer.capacity - headroom_;
    out.handle = pick + 1;
}

std::byte* LoanPool::open_loan(const LoanBuffer& buf) const noexcept {
    if (buf.handle == 0 || buf.handle > slots_.size()) return nullptr;
    const Slot& slot = slots_[buf.handle - 1];
    if (!slot.in_use || buf.data != slot.buffer.data.get() + headroom_) return nullptr;
    return slot.buffer.data.get();
}

void LoanPool::give_back(LoanBuffer& buf) noexcept {
    if (open_loan(buf) != nullptr) slots_[buf.handle - 1].in_use = false;
    buf = LoanBuffer{};
}

}  // namespace ferry::transport
