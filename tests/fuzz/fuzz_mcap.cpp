// Fuzz target: the MCAP reader of `ferry bag` / `ferry play` on arbitrary file contents.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mcap.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    ferry::mcap::ReaderOptions options;
    options.max_record_bytes = 1 << 24;  // the reader's cap, not the fuzzer's rss limit, bounds memory
    std::size_t seen = 0;
    try {
        const auto info = ferry::mcap::scan_buffer(
            reinterpret_cast<const std::byte*>(data), size, "fuzz", options,
            [&](const ferry::mcap::Channel&, const ferry::mcap::Message& m) {
                seen += m.size;
                return true;
            });
        if (info.recovered_up_to > size) __builtin_trap();
    } catch (const ferry::mcap::FormatError& e) {
        if (std::strncmp(e.what(), "fuzz: byte ", 11) != 0) __builtin_trap();
    }
    static volatile std::size_t sink;
    sink = seen;
    return 0;
}
