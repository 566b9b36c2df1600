// Text from users (topic and domain names, paths, config values) inside messages meant for a
// terminal or a log: control characters are shown escaped, so a name cannot split a line or
// drive the terminal.
//
//   escape_control("a\nb\x1b[2J") == "a\\nb\\x1b[2J"
#pragma once

#include <string>
#include <string_view>

namespace ferry::transport {

// `text` with \n, \r, \t as such and every other C0 control, DEL and (UTF-8 encoded) C1 control
// as \xHH or \u00HH. Other bytes, backslashes included, are kept as they are.
inline std::string escape_control(std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        } else if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
                   static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
            const auto c1 = static_cast<unsigned char>(text[++i]);
            out += "\\u00";
            out += kHex[c1 >> 4];
            out += kHex[c1 & 0xf];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

}  // namespace ferry::transport
