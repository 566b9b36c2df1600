// The raw baseline under the dds transport: two DDS topics (ping, pong) on Cyclone's C API
// with ferry's wire type (ferry::dds::Frame) and the QoS of a ferry `block` topic (RELIABLE,
// KEEP_ALL), on the loopback interface. Only the Header is written into a message of `size`
// bytes; Cyclone serializes and copies all of them, as it does under ferry.
#include <dds/dds.h>

#include <cstring>
#include <vector>

#include "ferry_frame.h"
#include "raw_channels.hpp"

namespace bench {

namespace {

constexpr dds_domainid_t kDomain = 211;  // apart from the tests' 1..200
const char* const kConfig =
    "<General><Interfaces><NetworkInterface name=\"lo\"/></Interfaces><AllowMulticast>false</AllowMulticast>"
    "</General><Discovery><ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>99</MaxAutoParticipantIndex>"
    "</Discovery>";

class DdsChannel final : public RawPing {
public:
    DdsChannel(std::size_t size, std::string prefix, bool ping) : size_(size), prefix_(std::move(prefix)), ping_(ping) {}
    ~DdsChannel() override {
        if (participant_ > 0) dds_delete(participant_);
    }

    bool open(std::string& error) {
        (void)dds_create_domain(kDomain, kConfig);  // PRECONDITION_NOT_MET: exists already
        participant_ = dds_create_participant(kDomain, nullptr, nullptr);
        if (participant_ < 0) return fail("dds_create_participant", participant_, error);
        const std::string out_name = prefix_ + (ping_ ? "/ping" : "/pong");
        const std::string in_name = prefix_ + (ping_ ? "/pong" : "/ping");
        const dds_entity_t out = dds_create_topic(participant_, &ferry_dds_Frame_desc, out_name.c_str(), nullptr, nullptr);
        const dds_entity_t in = dds_create_topic(participant_, &ferry_dds_Frame_desc, in_name.c_str(), nullptr, nullptr);
        if (out < 0 || in < 0) return fail("dds_create_topic", out < 0 ? out : in, error);
        dds_qos_t* q = dds_create_qos();
        dds_qset_reliability(q, DDS_RELIABILITY_RELIABLE, DDS_SECS(10));
        dds_qset_history(q, DDS_HISTORY_KEEP_ALL, 0);
        writer_ = dds_create_writer(participant_, out, q, nullptr);
        reader_ = dds_create_reader(participant_, in, q, nullptr);
        dds_delete_qos(q);
        if (writer_ < 0 || reader_ < 0) return fail("dds_create_writer/reader", writer_ < 0 ? writer_ : reader_, error);
        waitset_ = dds_create_waitset(participant_);
        dds_waitset_attach(waitset_, dds_create_readcondition(reader_, DDS_ANY_STATE), 0);
        buffer_.assign(size_, 0);
        return true;
    }

    std::vector<std::string> peer_args() const override { return {prefix_, ""}; }

    // Both directions matched.
    bool connect(std::string& error) override {
        const dds_time_t deadline = dds_time() + DDS_SECS(10);
        while (dds_time() < deadline) {
            dds_publication_matched_status_t pub{};
            dds_subscription_matched_status_t sub{};
            dds_get_publication_matched_status(writer_, &pub);
            dds_get_subscription_matched_status(reader_, &sub);
            if (pub.current_count > 0 && sub.current_count > 0) return true;
            dds_sleepfor(DDS_MSECS(5));
        }
        error = "dds: the peer did not match within 10 s";
        return false;
    }

    bool send(const Header& h, std::string& error) override {
        std::memcpy(buffer_.data(), &h, sizeof h);
        ferry_dds_Frame f{};
        f.number = ++number_;
        f.payload._buffer = buffer_.data();
        f.payload._length = f.payload._maximum = static_cast<std::uint32_t>(size_);
        f.payload._release = false;
        const dds_return_t rc = dds_write(writer_, &f);
        return rc == DDS_RETCODE_OK || fail("dds_write", rc, error);
    }

    bool receive(Header& h, std::string& error) override {
        const dds_time_t deadline = dds_time() + DDS_SECS(10);
        for (;;) {
            void* samples[1] = {nullptr};
            dds_sample_info_t info[1];
            const dds_return_t n = dds_take(reader_, samples, info, 1, 1);
            if (n > 0) {
                const bool ok = info[0].valid_data;
                if (ok) std::memcpy(&h, static_cast<ferry_dds_Frame*>(samples[0])->payload._buffer, sizeof h);
                dds_return_loan(reader_, samples, n);
                if (ok) return true;
                continue;
            }
            if (n < 0) return fail("dds_take", n, error);
            if (dds_time() >= deadline) {
                error = "dds: nothing received within 10 s";
                return false;
            }
            dds_waitset_wait_until(waitset_, nullptr, 0, deadline);
        }
    }

private:
    static bool fail(const char* what, dds_return_t rc, std::string& error) {
        error = std::string(what) + ": " + dds_strretcode(rc);
        return false;
    }

    std::size_t size_;
    std::string prefix_;
    bool ping_;
    dds_entity_t participant_ = 0, writer_ = 0, reader_ = 0, waitset_ = 0;
    std::vector<std::uint8_t> buffer_;
    std::uint64_t number_ = 0;
};

}  // namespace

std::unique_ptr<RawPing> make_dds_ping(std::size_t size, std::string& error) {
    static int counter = 0;
    auto c = std::make_unique<DdsChannel>(size, "bench_raw_" + std::to_string(::getpid()) + "_" + std::to_string(++counter), true);
    if (!c->open(error)) return nullptr;
    return c;
}

std::unique_ptr<Channel> make_dds_peer(std::size_t size, const std::string& prefix, std::string& error) {
    auto c = std::make_unique<DdsChannel>(size, prefix, false);
    if (!c->open(error)) return nullptr;
    std::string ignored;
    if (!c->connect(error)) return nullptr;
    return c;
}

}  // namespace bench
