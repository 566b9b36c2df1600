// Fuzz target: the TOML config parser on arbitrary text. Errors are exceptions with a message;
// anything else (a crash, a hang, a leak) is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <ferry/error.hpp>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        auto cfg = ferry::detail::Config::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.toml");
        cfg.resolve("camera/front");
        cfg.check_transports({"uds", "shm"});
    } catch (const ferry::Error&) {
    }
    return 0;
}
