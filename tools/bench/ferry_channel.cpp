#include "ferry_channel.hpp"

#include <cstring>

#include <ferry/node.hpp>

namespace bench {

namespace {

constexpr const char* kType = "ferry_bench";

class FerryChannel final : public Channel {
public:
    FerryChannel(const std::string& domain, const std::string& config_path, std::size_t size, bool ping_side)
        : node_(ping_side ? "bench_ping" : "bench_peer", ferry::NodeOptions{domain, config_path}), size_(size) {
        const char* out_topic = ping_side ? "bench/ping" : "bench/pong";
        const char* in_topic = ping_side ? "bench/pong" : "bench/ping";
        sub_ = node_.subscribe_raw(in_topic, kType);
        pub_ = node_.advertise_raw(out_topic, kType);
    }

    bool send(const Header& h, std::string& error) override {
        ferry::Status st;
        ferry::RawLoan loan = pub_.loan(size_, &st);
        if (!loan.valid()) {
            error = "loan of " + std::to_string(size_) + " bytes: " + st.message();
            return false;
        }
        std::memcpy(loan.data(), &h, sizeof h);  // the rest of the loan stays as it is
        st = loan.publish();
        if (!st) {
            error = "publish of " + std::to_string(size_) + " bytes: " + st.message();
            return false;
        }
        return true;
    }

    bool receive(Header& h, std::string& error) override {
        auto sample = sub_.take(kReceiveTimeout);
        if (!sample) {
            error = "no message on " + sub_.topic() + " within " + std::to_string(kReceiveTimeout.count()) + " s";
            return false;
        }
        if (sample->size() != size_) {
            error = "received " + std::to_string(sample->size()) + " bytes, expected " + std::to_string(size_);
            return false;
        }
        std::memcpy(&h, sample->data(), sizeof h);
        return true;
    }

    bool wait_connected(std::size_t subscribers, std::string& error) {
        if (pub_.wait_for_subscribers(subscribers, std::chrono::seconds(10))) return true;
        error = "fewer than " + std::to_string(subscribers) + " subscriber(s) on " + pub_.topic() + " within 10 s";
        return false;
    }

private:
    ferry::Node node_;
    std::size_t size_;
    ferry::RawSubscriber sub_;
    ferry::RawPublisher pub_;
};

}  // namespace

std::unique_ptr<Channel> make_ferry_channel(const std::string& domain,
                                            const std::string& config_path,
                                            std::size_t size,
                                            bool ping_side) {
    return std::make_unique<FerryChannel>(domain, config_path, size, ping_side);
}

bool ferry_wait_connected(Channel& ch, std::string& error, std::size_t subscribers) {
    return static_cast<FerryChannel&>(ch).wait_connected(subscribers, error);
}

}  // namespace bench
