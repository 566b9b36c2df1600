// The named-pipe plugin through the SDK interface.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>

#include <ferry/transport/framed_stream.hpp>
#include <ferry/transport/naming.hpp>

#define FERRY_TEST_PLUGIN "pipe"

namespace {

// "to-<reader id>.fifo": the suffix of every FIFO a writer creates for that reader.
std::string addressed_to(std::uint64_t reader_id) {
    char buf[32];
    std::snprintf(buf, sizeof buf, ".to-%016llx.fifo", static_cast<unsigned long long>(reader_id));
    return buf;
}

}  // namespace

// A reader's objects are the FIFOs its writers created for it.
bool reader_object_exists(const ferry::transport::TopicParams& reader) {
    DIR* dir = ::opendir(reader.runtime_dir.c_str());
    if (dir == nullptr) return false;
    const std::string prefix = "ferry." + reader.domain + ".";
    const std::string suffix = addressed_to(reader.endpoint_id);
    bool found = false;
    while (const dirent* e = ::readdir(dir)) {
        const std::string name = e->d_name;
        if (name.size() > prefix.size() + suffix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            found = true;
        }
    }
    ::closedir(dir);
    return found;
}

// A rogue process (same user) creates its own FIFO addressed to the reader, named like a
// writer's, waits until the reader has opened it, and writes into it. A reader that finds
// garbage closes and removes the FIFO; the rogue then makes a new one.
void write_raw(const ferry::transport::TopicParams& reader, const void* bytes, std::size_t n) {
    static std::map<std::uint64_t, int> fds;
    ::signal(SIGPIPE, SIG_IGN);  // runs in the rogue child only
    const std::string path = ferry::transport::runtime_path(
        reader.runtime_dir, reader.domain, ferry::transport::make_endpoint_id(::getpid(), 0xBAD),
        addressed_to(reader.endpoint_id).c_str() + 1);
    int& fd = fds[reader.endpoint_id];
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (fd <= 0) {
            ::unlink(path.c_str());
            if (::mkfifo(path.c_str(), 0600) != 0) return;
            // O_WRONLY|O_NONBLOCK opens only once a reader has the FIFO open.
            for (int i = 0; i < 2000 && fd <= 0; ++i) {
                fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                if (fd < 0) ::usleep(1000);
            }
            if (fd < 0) {
                ::unlink(path.c_str());
                fd = 0;
                return;
            }
        }
        if (::write(fd, bytes, n) >= 0 || errno != EPIPE) return;
        ::close(fd);  // the reader dropped this FIFO as garbage: make another
        fd = 0;
    }
}

#include "plugins/transport_cases.hpp"

// ---------------------------------------------------------------------------------------
// Floods: many FIFOs addressed to one reader.

TEST_CASE("pipe: half frames in 40 FIFOs stay within the reader's buffer budget", "[pipe][hostile][flood]") {
    using namespace ferry::transport;
    using namespace std::chrono_literals;
    using ferry::test::Child;
    using ferry::test::wait_until;
    cases::Env env;
    constexpr std::size_t kMax = 16u << 20;
    // The reader takes until a real writer's 100-byte message arrives.
    TopicParams rp;
    Child rd = cases::flood_target(env, kMax, rp);
    const std::size_t budget = reader_budget(rp);  // default: 4 x 16 MiB
    REQUIRE(budget == 4 * kMax);
    const std::size_t baseline = cases::vm_rss(rd.pid());

    struct sigaction ignore {}, old {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old);
    struct Flow {
        std::string path;
        int fd;
        std::size_t sent;
        bool closed;
    };
    const std::size_t half = kMax / 2;
    std::vector<Flow> flows;
    for (std::uint32_t i = 0; i < 40; ++i) {
        Flow f{runtime_path(rp.runtime_dir, rp.domain, make_endpoint_id(::getpid(), 1000 + i),
                            addressed_to(rp.endpoint_id).c_str() + 1),
               -1, 0, false};
        REQUIRE(::mkfifo(f.path.c_str(), 0600) == 0);
        // O_WRONLY|O_NONBLOCK opens once the reader has the FIFO open.
        REQUIRE(wait_until([&] { return (f.fd = ::open(f.path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) >= 0; },
                           5000ms));
        const FrameHeader h{0x50595246u, 0, kMax - 64};
        REQUIRE(::write(f.fd, &h, sizeof h) == sizeof h);
        flows.push_back(f);
    }
    const std::vector<char> bytes(64 * 1024, 'x');
    std::size_t peak = 0;
    const auto until = Clock::now() + 30s;
    for (;;) {
        std::vector<pollfd> pfds;
        std::vector<Flow*> who;
        for (Flow& f : flows) {
            if (f.closed || f.sent == half) continue;
            pfds.push_back({f.fd, POLLOUT, 0});
            who.push_back(&f);
        }
        if (pfds.empty() || Clock::now() > until) break;
        ::poll(pfds.data(), pfds.size(), 100);
        for (std::size_t i = 0; i < pfds.size(); ++i) {
            if (pfds[i].revents == 0) continue;
            Flow& f = *who[i];
            const ssize_t n = ::write(f.fd, bytes.data(), std::min(bytes.size(), half - f.sent));
            if (n > 0) f.sent += static_cast<std::size_t>(n);
            else if (n < 0 && errno != EAGAIN) f.closed = true;  // EPIPE: the reader dropped it
        }
        peak = std::max(peak, cases::vm_rss(rd.pid()));
    }
    ::sigaction(SIGPIPE, &old, nullptr);
    // A FIFO the reader dropped has no reader left: its writer sees EPIPE, or POLLERR if it had
    // already written its whole half and wrote no more.
    std::size_t dropped = 0;
    auto count_dropped = [&] {
        dropped = 0;
        for (Flow& f : flows) {
            pollfd p{f.fd, POLLOUT, 0};
            dropped += f.closed || (::poll(&p, 1, 0) == 1 && (p.revents & POLLERR)) ? 1 : 0;
        }
        return dropped >= 40 - budget / half;
    };
    CHECK(wait_until(count_dropped, 5000ms));  // at most budget/half halves fit
    INFO("baseline " << (baseline >> 20) << " MiB, peak " << (peak >> 20) << " MiB, dropped " << dropped);
    CHECK(peak < baseline + budget + (32u << 20));
    for (Flow& f : flows) {
        ::close(f.fd);
        ::unlink(f.path.c_str());
    }

    // A real writer is still heard.
    cases::send_final(env, rp, rd, kMax);
}
