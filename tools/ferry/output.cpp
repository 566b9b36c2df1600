#include "output.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <ferry/transport/text.hpp>

namespace ferry::cli {

std::string shown(const std::string& s) { return transport::escape_control(s); }

std::string json_escape(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out + "\"";
}

Json Json::object() {
    Json j;
    j.kind_ = Kind::object;
    j.text_ = "{";
    j.close_ = "}";
    return j;
}
Json Json::array() {
    Json j;
    j.kind_ = Kind::array;
    j.text_ = "[";
    j.close_ = "]";
    return j;
}
Json Json::string(const std::string& s) { return raw(json_escape(s)); }
Json Json::number(double v) {
    if (!std::isfinite(v)) return null();
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return raw(buf);
}
Json Json::integer(std::int64_t v) { return raw(std::to_string(v)); }
Json Json::unsigned_integer(std::uint64_t v) { return raw(std::to_string(v)); }
Json Json::boolean(bool v) { return raw(v ? "true" : "false"); }
Json Json::null() { return raw("null"); }
Json Json::raw(std::string text) {
    Json j;
    j.text_ = std::move(text);
    return j;
}

Json& Json::add(const std::string& key, const Json& value) {
    if (!empty_) text_ += ",";
    text_ += json_escape(key) + ":" + to_string(value);
    empty_ = false;
    return *this;
}

Json& Json::push(const Json& value) {
    if (!empty_) text_ += ",";
    text_ += to_string(value);
    empty_ = false;
    return *this;
}

std::string to_string(const Json& j) { return j.text_ + j.close_; }

Table::Table(std::vector<std::string> headers, std::vector<bool> right_aligned)
    : headers_(std::move(headers)), right_(std::move(right_aligned)) {
    right_.resize(headers_.size(), false);
}

void Table::add_row(std::vector<std::string> cells) {
    cells.resize(headers_.size());
    for (auto& c : cells) c = shown(c);
    rows_.push_back(std::move(cells));
}

std::string Table::str() const {
    std::vector<std::size_t> width(headers_.size());
    for (std::size_t i = 0; i < headers_.size(); ++i) width[i] = headers_[i].size();
    for (const auto& r : rows_)
        for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    std::ostringstream os;
    auto line = [&](const std::vector<std::string>& cells) {
        std::string l;
        for (std::size_t i = 0; i < cells.size(); ++i) {
            const std::string pad(width[i] - cells[i].size(), ' ');
            l += right_[i] ? pad + cells[i] : cells[i] + (i + 1 < cells.size() ? pad : "");
            if (i + 1 < cells.size()) l += "  ";
        }
        while (!l.empty() && l.back() == ' ') l.pop_back();
        os << l << "\n";
    };
    line(headers_);
    for (const auto& r : rows_) line(r);
    return os.str();
}

std::string fixed(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

std::string human_bytes(double bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (std::fabs(bytes) >= 1024 && u < 4) {
        bytes /= 1024;
        ++u;
    }
    return u == 0 ? fixed(bytes, 0) + " B" : fixed(bytes, 1) + " " + units[u];
}

std::string human_seconds(double s) {
    const double a = std::fabs(s);
    if (a < 1e-6) return fixed(s * 1e9, 0) + " ns";
    if (a < 1e-3) return fixed(s * 1e6, 1) + " us";
    if (a < 1) return fixed(s * 1e3, 2) + " ms";
    return fixed(s, 2) + " s";
}

}  // namespace ferry::cli
