#include "peer_channels.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#ifdef FERRY_BENCH_ZMQ
#include <zmq.h>
#endif
#ifdef FERRY_BENCH_ICEORYX
#include <iceoryx_hoofs/log/logmanager.hpp>
#include <iceoryx_posh/popo/untyped_publisher.hpp>
#include <iceoryx_posh/popo/untyped_subscriber.hpp>
#include <iceoryx_posh/popo/wait_set.hpp>
#include <iceoryx_posh/runtime/posh_runtime.hpp>
#endif

extern char** environ;

namespace bench {

namespace {

using Clock = std::chrono::steady_clock;

[[maybe_unused]] std::string unique_name() {
    static int counter = 0;
    return std::to_string(::getpid()) + "_" + std::to_string(++counter);
}

// ---------------------------------------------------------------------------------------------
#ifdef FERRY_BENCH_ZMQ

class ZmqChannel final : public RawPing {
public:
    ZmqChannel(std::size_t size, std::uint32_t depth) : buf_(size, 0), depth_(static_cast<int>(depth)) {}
    ~ZmqChannel() override {
        if (pub_) ::zmq_close(pub_);
        if (sub_) ::zmq_close(sub_);
        if (ctx_) ::zmq_ctx_term(ctx_);
        if (owner_ && !dir_.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(dir_, ec);
        }
    }

    // Ping side: a private directory for the two ipc endpoints; binds "ping", connects "pong".
    bool prepare(std::string& error) {
        char tmpl[] = "/tmp/ferry-bench-zmq-XXXXXX";
        if (!::mkdtemp(tmpl)) {
            error = std::string("mkdtemp: ") + std::strerror(errno);
            return false;
        }
        dir_ = tmpl;
        owner_ = true;
        return open(true, error);
    }
    bool open_peer(const std::string& dir, std::string& error) {
        dir_ = dir;
        return open(false, error);
    }

    std::vector<std::string> peer_args() const override { return {dir_, "-"}; }

    // Pub/sub forgets what it sends before a subscriber joined: probe with echoes until one is
    // answered, then let the answers to the other probes arrive and drop them.
    bool connect(std::string& error) override {
        const auto deadline = Clock::now() + std::chrono::seconds(10);
        bool answered = false;
        while (!answered && Clock::now() < deadline) {
            if (!send(Header{Op::echo, 0, kProbe, 0}, error)) return false;
            answered = wait_readable(20);
        }
        if (!answered) error = "zmq: the peer did not answer within 10 s";
        return answered;  // receive() drops the answers to the other probes as they come
    }

    bool send(const Header& h, std::string& error) override {
        std::memcpy(buf_.data(), &h, sizeof h);
        while (::zmq_send(pub_, buf_.data(), buf_.size(), 0) < 0) {
            if (errno == EINTR) continue;
            error = std::string("zmq_send: ") + ::zmq_strerror(errno);
            return false;
        }
        return true;
    }

    bool receive(Header& h, std::string& error) override {
        zmq_msg_t msg;
        ::zmq_msg_init(&msg);
        int n;
        while ((n = ::zmq_msg_recv(&msg, sub_, 0)) < 0 && errno == EINTR) {
        }
        if (n < 0) {
            error = errno == EAGAIN ? std::string("zmq: no message within 10 s")
                                    : std::string("zmq_msg_recv: ") + ::zmq_strerror(errno);
            ::zmq_msg_close(&msg);
            return false;
        }
        const bool ok = ::zmq_msg_size(&msg) == buf_.size();
        if (ok) std::memcpy(&h, ::zmq_msg_data(&msg), sizeof h);
        else error = "zmq: received " + std::to_string(::zmq_msg_size(&msg)) + " bytes, expected " + std::to_string(buf_.size());
        ::zmq_msg_close(&msg);
        if (ok && h.op == Op::echo_reply && h.sequence == kProbe) return receive(h, error);
        return ok;
    }

private:
    static constexpr std::uint64_t kProbe = ~std::uint64_t{0};  // the sequence of connect()'s echoes

    bool wait_readable(long ms) {
        zmq_pollitem_t item{sub_, 0, ZMQ_POLLIN, 0};
        return ::zmq_poll(&item, 1, ms) == 1;
    }

    bool open(bool ping_side, std::string& error) {
        auto fail = [&](const char* what) {
            error = std::string("zmq: ") + what + ": " + ::zmq_strerror(errno);
            return false;
        };
        ctx_ = ::zmq_ctx_new();
        if (!ctx_) return fail("zmq_ctx_new");
        pub_ = ::zmq_socket(ctx_, ZMQ_PUB);
        sub_ = ::zmq_socket(ctx_, ZMQ_SUB);
        if (!pub_ || !sub_) return fail("zmq_socket");
        const int one = 1, linger = 1000, timeout = 10000;
        ::zmq_setsockopt(pub_, ZMQ_SNDHWM, &depth_, sizeof depth_);
        ::zmq_setsockopt(pub_, ZMQ_XPUB_NODROP, &one, sizeof one);
        ::zmq_setsockopt(pub_, ZMQ_LINGER, &linger, sizeof linger);
        ::zmq_setsockopt(sub_, ZMQ_RCVHWM, &depth_, sizeof depth_);
        ::zmq_setsockopt(sub_, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        ::zmq_setsockopt(sub_, ZMQ_SUBSCRIBE, "", 0);
        const std::string ping = "ipc://" + dir_ + "/ping", pong = "ipc://" + dir_ + "/pong";
        if (::zmq_bind(pub_, (ping_side ? ping : pong).c_str()) != 0) return fail("zmq_bind");
        if (::zmq_connect(sub_, (ping_side ? pong : ping).c_str()) != 0) return fail("zmq_connect");
        return true;
    }

    std::vector<char> buf_;
    int depth_;
    std::string dir_;
    bool owner_ = false;
    void* ctx_ = nullptr;
    void* pub_ = nullptr;
    void* sub_ = nullptr;
};

#endif  // FERRY_BENCH_ZMQ

// ---------------------------------------------------------------------------------------------
#ifdef FERRY_BENCH_ICEORYX

// One iceoryx runtime per process, made on first use (RouDi must be running by then).
void init_runtime(const std::string& role) {
    static bool done = false;
    if (done) return;
    iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn);
    const std::string name = "ferry-bench-" + role + "-" + std::to_string(::getpid());
    iox::runtime::PoshRuntime::initRuntime(iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name));
    done = true;
}

// From std::string: iceoryx's constructor from a char pointer reads past a short literal as far
// as GCC's bounds check can tell (-Warray-bounds).
iox::capro::ServiceDescription service(const std::string& instance, const std::string& event) {
    return {iox::capro::IdString_t(iox::cxx::TruncateToCapacity, std::string("FerryBench")),
            iox::capro::IdString_t(iox::cxx::TruncateToCapacity, instance),
            iox::capro::IdString_t(iox::cxx::TruncateToCapacity, event)};
}

class IceoryxChannel final : public RawPing {
public:
    IceoryxChannel(std::size_t size, std::uint32_t depth, bool waitset, const std::string& instance, bool ping_side)
        : size_(static_cast<std::uint32_t>(size)), instance_(instance) {
        init_runtime(ping_side ? "ping" : "peer");
        iox::popo::PublisherOptions po;
        po.historyCapacity = 0;
        po.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
        iox::popo::SubscriberOptions so;
        so.queueCapacity = depth;
        so.historyRequest = 0;
        so.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
        pub_ = std::make_unique<iox::popo::UntypedPublisher>(service(instance, ping_side ? "Ping" : "Pong"), po);
        sub_ = std::make_unique<iox::popo::UntypedSubscriber>(service(instance, ping_side ? "Pong" : "Ping"), so);
        if (waitset) {
            ws_ = std::make_unique<iox::popo::WaitSet<>>();
            attached_ = !ws_->attachState(*sub_, iox::popo::SubscriberState::HAS_DATA).has_error();
        }
    }
    ~IceoryxChannel() override {
        if (ws_) ws_->detachState(*sub_, iox::popo::SubscriberState::HAS_DATA);
    }

    std::vector<std::string> peer_args() const override { return {instance_, "-"}; }

    bool connect(std::string& error) override {
        if (ws_ && !attached_) {
            error = "iceoryx: cannot attach the subscriber to a WaitSet";
            return false;
        }
        const auto deadline = Clock::now() + std::chrono::seconds(10);
        while (!(pub_->hasSubscribers() && sub_->getSubscriptionState() == iox::SubscribeState::SUBSCRIBED)) {
            if (Clock::now() > deadline) {
                error = "iceoryx: publisher and subscriber did not meet within 10 s";
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));  // set-up, not measured
        }
        return true;
    }

    bool send(const Header& h, std::string& error) override {
        auto loaned = pub_->loan(size_);
        if (loaned.has_error()) {
            error = "iceoryx: cannot loan a chunk of " + std::to_string(size_) + " bytes (RouDi's mempools)";
            return false;
        }
        void* chunk = loaned.value();
        std::memcpy(chunk, &h, sizeof h);
        pub_->publish(chunk);
        return true;
    }

    bool receive(Header& h, std::string& error) override {
        const auto deadline = Clock::now() + kReceiveTimeout;
        for (std::uint32_t i = 1;; ++i) {
            auto taken = sub_->take();
            if (!taken.has_error()) {
                std::memcpy(&h, taken.value(), sizeof h);
                sub_->release(taken.value());
                return true;
            }
            if (ws_) {
                (void)ws_->timedWait(iox::units::Duration::fromMilliseconds(100));
                if (Clock::now() > deadline) break;
            } else {
                __builtin_ia32_pause();
                if (i % 4096 == 0 && Clock::now() > deadline) break;
            }
        }
        error = "iceoryx: no sample within 10 s";
        return false;
    }

private:
    std::uint32_t size_;
    std::string instance_;
    std::unique_ptr<iox::popo::UntypedPublisher> pub_;
    std::unique_ptr<iox::popo::UntypedSubscriber> sub_;
    std::unique_ptr<iox::popo::WaitSet<>> ws_;
    bool attached_ = false;
};

#endif  // FERRY_BENCH_ICEORYX

}  // namespace

bool other_available(const std::string& kind, std::string& why) {
    if (kind == "zmq") {
#ifdef FERRY_BENCH_ZMQ
        return true;
#else
        why = "built without ZeroMQ (apt-get install libzmq3-dev, then rebuild)";
        return false;
#endif
    }
    if (kind == "iceoryx-poll" || kind == "iceoryx-waitset") {
#ifdef FERRY_BENCH_ICEORYX
        if (::access(FERRY_BENCH_ROUDI, X_OK) == 0) return true;
        why = std::string("iceoryx's daemon ") + FERRY_BENCH_ROUDI + " is not installed (apt-get install iceoryx)";
        return false;
#else
        why = "built without iceoryx (apt-get install libiceoryx-posh-dev iceoryx, then rebuild)";
        return false;
#endif
    }
    why = "unknown kind '" + kind + "'";
    return false;
}

std::unique_ptr<RawPing> make_other_ping(const std::string& kind, std::size_t size, std::uint32_t depth,
                                         std::string& error) {
#ifdef FERRY_BENCH_ZMQ
    if (kind == "zmq") {
        auto c = std::make_unique<ZmqChannel>(size, depth);
        if (c->prepare(error)) return c;
        return nullptr;
    }
#endif
#ifdef FERRY_BENCH_ICEORYX
    if (kind == "iceoryx-poll" || kind == "iceoryx-waitset")
        return std::make_unique<IceoryxChannel>(size, depth, kind == "iceoryx-waitset", "run" + unique_name(), true);
#endif
    (void)size;
    (void)depth;
    other_available(kind, error);
    return nullptr;
}

std::unique_ptr<Channel> make_other_peer(const std::string& kind, std::size_t size, std::uint32_t depth,
                                         const std::string& a, const std::string& b, std::string& error) {
    (void)b;
#ifdef FERRY_BENCH_ZMQ
    if (kind == "zmq") {
        auto c = std::make_unique<ZmqChannel>(size, depth);
        if (c->open_peer(a, error)) return c;
        return nullptr;
    }
#endif
#ifdef FERRY_BENCH_ICEORYX
    if (kind == "iceoryx-poll" || kind == "iceoryx-waitset") {
        auto c = std::make_unique<IceoryxChannel>(size, depth, kind == "iceoryx-waitset", a, false);
        if (c->connect(error)) return c;
        return nullptr;
    }
#endif
    (void)size;
    (void)depth;
    (void)a;
    other_available(kind, error);
    return nullptr;
}

#ifdef FERRY_BENCH_ICEORYX
// RouDi takes registrations on a Unix datagram socket at /tmp/roudi (iceoryx 2). A file left by
// an earlier RouDi refuses connections; the live one accepts them.
bool roudi_listening() {
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, "/tmp/roudi", sizeof addr.sun_path - 1);
    const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}
#endif

bool Roudi::start(const std::vector<std::size_t>& sizes, std::uint32_t depth, std::string& error) {
#ifdef FERRY_BENCH_ICEORYX
    if (roudi_listening()) {
        error = "a RouDi is already running (its mempools may not fit the sizes measured); stop it first";
        return false;
    }
    char tmpl[] = "/tmp/ferry-bench-roudi-XXXXXX";
    if (!::mkdtemp(tmpl)) {
        error = std::string("mkdtemp: ") + std::strerror(errno);
        return false;
    }
    dir_ = tmpl;
    const std::string config = dir_ + "/roudi.toml";
    {
        // One mempool per size measured (payload sizes, 64-byte multiples), enough chunks for
        // two full queues of `depth` plus what each side holds while loaning and reading.
        std::set<std::size_t> pools;
        for (std::size_t s : sizes) pools.insert((s + 63) / 64 * 64);
        std::ofstream out(config);
        out << "[general]\nversion = 1\n\n[[segment]]\n";
        for (std::size_t s : pools) out << "\n[[segment.mempool]]\nsize = " << s << "\ncount = " << 2 * depth + 16 << "\n";
        if (!out) {
            error = "cannot write " + config;
            return false;
        }
    }
    std::vector<std::string> argv{FERRY_BENCH_ROUDI, "-c", config, "-l", "warning"};
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, cargv[0], nullptr, nullptr, cargv.data(), environ);
    if (rc != 0) {
        pid_ = -1;
        error = std::string("cannot start ") + FERRY_BENCH_ROUDI + ": " + std::strerror(rc);
        return false;
    }
    // Ready once its socket exists (iceoryx 2: /tmp/roudi) and it is still running.
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            error = std::string(FERRY_BENCH_ROUDI) + " exited at start (another RouDi running?)";
            return false;
        }
        if (roudi_listening()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop();
    error = std::string(FERRY_BENCH_ROUDI) + " did not open /tmp/roudi within 10 s";
    return false;
#else
    (void)sizes;
    (void)depth;
    error = "built without iceoryx";
    return false;
#endif
}

void Roudi::stop() {
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        int status = 0;
        const auto deadline = Clock::now() + std::chrono::seconds(10);
        while (::waitpid(pid_, &status, WNOHANG) == 0) {
            if (Clock::now() > deadline) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &status, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        pid_ = -1;
    }
    if (!dir_.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
        dir_.clear();
    }
}

}  // namespace bench
