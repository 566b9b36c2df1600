// The POSIX message-queue plugin through the SDK interface.
#include <linux/capability.h>
#include <mqueue.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <map>
#include <thread>

#include <ferry/transport/fragment.hpp>
#include <ferry/transport/naming.hpp>
#include <ferry/transport/transport.hpp>

#define FERRY_TEST_PLUGIN "mq"

namespace {
std::string queue_of(const ferry::transport::TopicParams& reader) {
    return "/" + ferry::transport::object_name(reader.domain, reader.endpoint_id, "mq");
}
}  // namespace

bool reader_object_exists(const ferry::transport::TopicParams& reader) {
    const mqd_t q = ::mq_open(queue_of(reader).c_str(), O_RDONLY | O_CLOEXEC);
    if (q == static_cast<mqd_t>(-1)) return errno != ENOENT;
    ::mq_close(q);
    return true;
}

void write_raw(const ferry::transport::TopicParams& reader, const void* bytes, std::size_t n) {
    static std::map<std::uint64_t, mqd_t> queues;
    auto it = queues.find(reader.endpoint_id);
    if (it == queues.end()) it = queues.emplace(reader.endpoint_id, ::mq_open(queue_of(reader).c_str(), O_WRONLY | O_CLOEXEC)).first;
    ::mq_send(it->second, static_cast<const char*>(bytes), n, 0);
}

#include "plugins/transport_cases.hpp"

namespace {

std::uint64_t proc_value(const char* path) {
    std::ifstream in(path);
    std::uint64_t v = 0;
    in >> v;
    return v;
}

bool drop_cap_sys_resource() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &header, data) != 0) return false;
    data[0].effective &= ~(1u << CAP_SYS_RESOURCE);
    return ::syscall(SYS_capset, &header, data) == 0;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("mq: a depth above the queue limits is refused with the limit and how to raise it", "[mq]") {
    using namespace cases;
    Env env;
    const std::uint64_t msg_max = proc_value("/proc/sys/fs/mqueue/msg_max");
    REQUIRE(msg_max > 0);

    // Beyond the kernel's hard ceiling: refused for everyone, root included.
    TopicParams p = env.params(Overflow::block, 70000);
    Status st = env.transport.validate(p);
    CHECK(st.code() == Errc::no_resources);
    INFO(st.message());
    CHECK((contains(st.message(), "65536") || contains(st.message(), "fs.mqueue.msg_max")));
    std::unique_ptr<Reader> r;
    CHECK(env.transport.create_reader(p, r).code() == Errc::no_resources);
    CHECK_FALSE(reader_object_exists(p));

    // An unprivileged process is bound by fs.mqueue.msg_max: check in a child without
    // CAP_SYS_RESOURCE (this test may run as root).
    int msg[2];
    REQUIRE(::pipe(msg) == 0);
    Child child = Child::fork([&] {
        if (::geteuid() == 0 && !drop_cap_sys_resource()) return 10;
        TopicParams q = env.peer(p, ::getpid(), 1);
        q.depth = static_cast<std::uint32_t>(msg_max + 1);
        const Status s = env.transport.validate(q);
        std::unique_ptr<Reader> rr;
        const Status c = env.transport.create_reader(q, rr);
        const std::string text = s.message();
        if (::write(msg[1], text.data(), text.size()) < 0) return 11;
        return s.code() == Errc::no_resources && c.code() == Errc::no_resources ? 0 : 12;
    });
    ::close(msg[1]);
    CHECK(child.wait(5000ms) == 0);
    std::string text(4096, '\0');
    const ssize_t n = ::read(msg[0], text.data(), text.size());
    ::close(msg[0]);
    text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    INFO(text);
    CHECK(contains(text, "depth " + std::to_string(msg_max + 1)));
    CHECK(contains(text, "fs.mqueue.msg_max = " + std::to_string(msg_max)));
    CHECK(contains(text, "sysctl -w fs.mqueue.msg_max=" + std::to_string(msg_max + 1)));
    CHECK(contains(text, "CAP_SYS_RESOURCE"));
}

TEST_CASE("mq: a default depth above fs.mqueue.msg_max is lowered to it, an explicit one is not", "[mq]") {
    using namespace cases;
    Env env;
    const std::uint64_t msg_max = proc_value("/proc/sys/fs/mqueue/msg_max");
    REQUIRE(msg_max > 0);
    REQUIRE(msg_max < 65536);
    TopicParams p = env.params(Overflow::block, static_cast<std::uint32_t>(msg_max + 6), 100);
    // In a child without CAP_SYS_RESOURCE, so that fs.mqueue.msg_max binds even under root.
    Child child = Child::fork([&] {
        if (::geteuid() == 0 && !drop_cap_sys_resource()) return 10;
        TopicParams q = env.peer(p, ::getpid(), 1);
        q.depth_explicit = false;
        if (!env.transport.validate(q)) return 11;
        std::unique_ptr<Reader> r;
        if (!env.transport.create_reader(q, r)) return 12;
        const mqd_t m = ::mq_open(queue_of(q).c_str(), O_RDONLY | O_CLOEXEC);
        if (m == static_cast<mqd_t>(-1)) return 13;
        mq_attr attr{};
        const bool got = ::mq_getattr(m, &attr) == 0;
        ::mq_close(m);
        if (!got || static_cast<std::uint64_t>(attr.mq_maxmsg) != msg_max) return 14;
        // A writer of the same (default) depth reaches that reader and fills exactly its queue.
        TopicParams wp = env.peer(p, ::getpid(), 2);
        wp.depth_explicit = false;
        wp.overflow = Overflow::fail;
        std::unique_ptr<Writer> w;
        if (!env.transport.create_writer(wp, w)) return 15;
        w->sync_readers({PeerInfo{q.endpoint_id, ::getpid()}});
        if (w->reader_count() != 1) return 16;
        std::uint64_t sent = 0;
        for (int i = 0; i < static_cast<int>(msg_max) + 6; ++i) {
            LoanBuffer buf;
            if (!w->loan(8, buf)) return 17;
            if (w->commit(buf, 8)) ++sent;
        }
        if (sent != msg_max) return 18;
        q.depth_explicit = true;
        const Status st = env.transport.validate(q);
        return st.code() == Errc::no_resources ? 0 : 19;
    });
    CHECK(child.wait(5000ms) == 0);
}

TEST_CASE("mq: a queue that does not fit RLIMIT_MSGQUEUE is refused with how to raise it", "[mq]") {
    using namespace cases;
    Env env;
    TopicParams p = env.params(Overflow::block, 8, 1u << 20);
    int msg[2];
    REQUIRE(::pipe(msg) == 0);
    Child child = Child::fork([&] {
        struct rlimit rl {
            4096, 4096
        };
        if (::setrlimit(RLIMIT_MSGQUEUE, &rl) != 0) return 10;
        const Status s = env.transport.validate(env.peer(p, ::getpid(), 1));
        const std::string text = s.message();
        if (::write(msg[1], text.data(), text.size()) < 0) return 11;
        return s.code() == Errc::no_resources ? 0 : 12;
    });
    ::close(msg[1]);
    CHECK(child.wait(5000ms) == 0);
    std::string text(4096, '\0');
    const ssize_t n = ::read(msg[0], text.data(), text.size());
    ::close(msg[0]);
    text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    INFO(text);
    CHECK(contains(text, "RLIMIT_MSGQUEUE"));
    CHECK(contains(text, "ulimit -q"));
}

TEST_CASE("mq: small topics get small units - large ones msgsize_max units", "[mq]") {
    using namespace cases;
    Env env;
    TopicParams small = env.params(Overflow::block, 4, 100);
    auto r = env.reader(small);
    mq_attr attr{};
    const mqd_t q = ::mq_open(("/" + object_name(small.domain, small.endpoint_id, "mq")).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(q != static_cast<mqd_t>(-1));
    REQUIRE(::mq_getattr(q, &attr) == 0);
    ::mq_close(q);
    CHECK(attr.mq_maxmsg == 4);
    CHECK(attr.mq_msgsize == 132);
    auto w = env.writer(env.peer(small));
    w->sync_readers({info(small)});
    REQUIRE(send(*w, 100, seed_of(1, 0)));
    CHECK(take(*r, in(1000ms)).ok_bytes);
}

TEST_CASE("mq: when RLIMIT_MSGQUEUE is nearly used up a reader falls back to smaller units", "[mq]") {
    using namespace cases;
    Env env;
    TopicParams p = env.params(Overflow::block, 8, 1u << 20);
    Child child = Child::fork([&] {
        // RLIMIT_MSGQUEUE counts all queues of the user, other processes' included: raise the
        // soft limit step by step from nothing until a queue fits; the first that fits cannot
        // have room for full 8 KiB units.
        struct rlimit rl {};
        if (::getrlimit(RLIMIT_MSGQUEUE, &rl) != 0) return 10;
        const rlim_t hard = rl.rlim_max;
        TopicParams rp = env.peer(p, ::getpid(), 1);
        std::unique_ptr<Reader> r;
        for (rlim_t soft = 4096; soft <= hard && !r; soft += 4096) {
            rl.rlim_cur = soft;
            if (::setrlimit(RLIMIT_MSGQUEUE, &rl) != 0) return 11;
            if (!env.transport.create_reader(rp, r)) r.reset();
        }
        if (!r) return 12;
        mq_attr attr{};
        const mqd_t q = ::mq_open(("/" + object_name(rp.domain, rp.endpoint_id, "mq")).c_str(), O_RDONLY | O_CLOEXEC);
        if (q == static_cast<mqd_t>(-1) || ::mq_getattr(q, &attr) != 0) return 13;
        ::mq_close(q);
        if (attr.mq_msgsize >= 8192 || attr.mq_msgsize < 1024) return 14;
        std::unique_ptr<Writer> w;
        if (!env.transport.create_writer(env.peer(p, ::getpid(), 2), w)) return 15;
        w->sync_readers({info(rp)});
        std::thread sender([&] { send(*w, 65536, seed_of(1, 0)); });
        const Got g = take(*r, in(5000ms));
        sender.join();
        return g.code == Errc::ok && g.size == 65536 && g.ok_bytes ? 0 : 16;
    });
    CHECK(child.wait(20000ms) == 0);
}

TEST_CASE("mq: drop_oldest writers discard the oldest units of a stopped reader's queue", "[mq]") {
    using namespace cases;
    Env env;
    constexpr std::uint32_t kCount = 3000;
    TopicParams rp = env.params(Overflow::drop_oldest, 4, 1u << 20);
    TopicParams child_reader;
    Child child = idle_reader_child(env, rp, child_reader);
    auto w = env.writer(env.peer(rp));
    w->sync_readers({info(child_reader)});
    REQUIRE(child.stop());
    const auto start = Clock::now();
    for (std::uint32_t i = 0; i < kCount; ++i) REQUIRE(send(*w, 100, seed_of(1, i)));
    CHECK(Clock::now() - start < 1000ms);  // never waited
    // The queue holds the newest units (the drain thread may have taken a few before SIGSTOP).
    const mqd_t q = ::mq_open(("/" + object_name(rp.domain, child_reader.endpoint_id, "mq")).c_str(),
                              O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    REQUIRE(q != static_cast<mqd_t>(-1));
    std::vector<std::uint32_t> seqs;
    std::vector<char> unit(8192);
    while (::mq_receive(q, unit.data(), unit.size(), nullptr) >= 0) {
        UnitHeader h;
        std::memcpy(&h, unit.data(), sizeof h);
        seqs.push_back(h.sequence);
    }
    ::mq_close(q);
    REQUIRE(seqs.size() == 4);
    for (std::uint32_t k = 0; k < 4; ++k) CHECK(seqs[k] == kCount - 4 + k);
    child.kill(SIGKILL);
    child.wait(5000ms);
    w->sync_readers({});
    CHECK_FALSE(reader_object_exists(child_reader));
}

TEST_CASE("mq: first halves of big messages from 40 writer ids stay within the reader's budget", "[mq][hostile][flood]") {
    using namespace cases;
    Env env;
    constexpr std::size_t kMax = 16u << 20;
    // The reader takes until a real writer's 100-byte message arrives.
    TopicParams rp;
    Child rd = cases::flood_target(env, kMax, rp);
    const std::size_t budget = std::max<std::size_t>(64u << 20, 2 * kMax);  // the default
    auto rss = [&] { return cases::vm_rss(rd.pid()); };
    const std::size_t baseline = rss();

    const mqd_t q = ::mq_open(queue_of(rp).c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(q != static_cast<mqd_t>(-1));
    mq_attr attr{};
    REQUIRE(::mq_getattr(q, &attr) == 0);
    const std::size_t payload = static_cast<std::size_t>(attr.mq_msgsize) - kUnitHeaderSize;
    std::vector<char> unit(static_cast<std::size_t>(attr.mq_msgsize), 'x');
    std::size_t peak = 0;
    const std::size_t rounds = kMax / 2 / payload;
    bool sent = true;
    for (std::size_t i = 0; i < rounds && sent; ++i) {
        for (std::uint32_t w = 0; w < 40; ++w) {
            UnitHeader h{kUnitMagic, 0, make_endpoint_id(::getpid(), 1000 + w), static_cast<std::uint32_t>(kMax - 64),
                         static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(payload), 0};
            h.check = unit_check(h);
            std::memcpy(unit.data(), &h, sizeof h);
            timespec until{};
            ::clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 5;
            sent = sent && ::mq_timedsend(q, unit.data(), unit.size(), 0, &until) == 0;
        }
        if (i % 64 == 0) peak = std::max(peak, rss());
    }
    ::mq_close(q);
    REQUIRE(sent);
    peak = std::max(peak, rss());
    INFO("baseline " << (baseline >> 20) << " MiB, peak " << (peak >> 20) << " MiB");
    CHECK(peak < baseline + budget + (32u << 20));

    // A real writer is still heard.
    cases::send_final(env, rp, rd, kMax);
    ::mq_unlink(queue_of(rp).c_str());  // the reader's child ended with _exit, its queue stays
}
