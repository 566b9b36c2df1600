#include "raw_channels.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <mqueue.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>

namespace bench {

namespace {

using Clock = std::chrono::steady_clock;

std::string os_error(const std::string& action) { return action + ": " + std::strerror(errno); }

std::size_t read_proc(const char* path, std::size_t fallback) {
    std::ifstream in(path);
    std::size_t v = 0;
    return (in >> v) && v > 0 ? v : fallback;
}

std::string unique_suffix() {
    static int counter = 0;
    return std::to_string(::getpid()) + "." + std::to_string(++counter);
}

// A message buffer whose pages are faulted in up front.
std::vector<char> message_buffer(std::size_t size) { return std::vector<char>(size, 0); }

bool write_all(int fd, const char* p, std::size_t n, std::string& error) {
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            error = os_error("write");
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

bool read_all(int fd, char* p, std::size_t n, std::string& error) {
    while (n > 0) {
        const ssize_t r = ::read(fd, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            error = os_error("read");
            return false;
        }
        if (r == 0) {
            error = "read: the peer closed its end";
            return false;
        }
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Byte streams (FIFO pair, socket): the whole message goes through the kernel each way.

class StreamChannel : public RawPing {
public:
    explicit StreamChannel(std::size_t size) : out_(message_buffer(size)), in_(message_buffer(size)) {}
    ~StreamChannel() override {
        if (in_fd_ >= 0) ::close(in_fd_);
        if (out_fd_ >= 0 && out_fd_ != in_fd_) ::close(out_fd_);
    }

    bool send(const Header& h, std::string& error) override {
        std::memcpy(out_.data(), &h, sizeof h);
        return write_all(out_fd_, out_.data(), out_.size(), error);
    }
    bool receive(Header& h, std::string& error) override {
        if (!read_all(in_fd_, in_.data(), in_.size(), error)) return false;
        std::memcpy(&h, in_.data(), sizeof h);
        return true;
    }

protected:
    int in_fd_ = -1;
    int out_fd_ = -1;
    std::vector<char> out_;
    std::vector<char> in_;
};

// Ping writes FIFO a and reads FIFO b. The peer opens b for writing first, then a for reading;
// so once the ping side's non-blocking open of a succeeds, the peer also holds b open and a
// read of b cannot see a premature end of file.
class FifoChannel final : public StreamChannel {
public:
    explicit FifoChannel(std::size_t size) : StreamChannel(size) {}
    ~FifoChannel() override { remove_files(); }

    bool prepare(std::string& error) {
        char tmpl[] = "/tmp/ferry-bench-XXXXXX";
        if (!::mkdtemp(tmpl)) {
            error = os_error("mkdtemp /tmp/ferry-bench-XXXXXX");
            return false;
        }
        dir_ = tmpl;
        a_ = dir_ + "/a";
        b_ = dir_ + "/b";
        if (::mkfifo(a_.c_str(), 0600) != 0 || ::mkfifo(b_.c_str(), 0600) != 0) {
            error = os_error("mkfifo in " + dir_);
            return false;
        }
        in_fd_ = ::open(b_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (in_fd_ < 0) {
            error = os_error("open " + b_);
            return false;
        }
        return true;
    }

    // The peer's side: `a` read, `b` written (blocking opens, in the order described above).
    bool open_peer(const std::string& a, const std::string& b, std::string& error) {
        out_fd_ = ::open(b.c_str(), O_WRONLY | O_CLOEXEC);
        if (out_fd_ < 0) {
            error = os_error("open " + b);
            return false;
        }
        in_fd_ = ::open(a.c_str(), O_RDONLY | O_CLOEXEC);
        if (in_fd_ < 0) {
            error = os_error("open " + a);
            return false;
        }
        return true;
    }

    std::vector<std::string> peer_args() const override { return {a_, b_}; }

    bool connect(std::string& error) override {
        const auto deadline = Clock::now() + std::chrono::seconds(10);
        while ((out_fd_ = ::open(a_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
            if (errno != ENXIO || Clock::now() > deadline) {
                error = os_error("open " + a_ + " (peer not reading)");
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));  // setup only, not measured
        }
        // Blocking from here on: the plain mechanism.
        ::fcntl(out_fd_, F_SETFL, ::fcntl(out_fd_, F_GETFL) & ~O_NONBLOCK);
        ::fcntl(in_fd_, F_SETFL, ::fcntl(in_fd_, F_GETFL) & ~O_NONBLOCK);
        remove_files();  // both ends are open: the names are no longer needed
        return true;
    }

private:
    void remove_files() {
        if (dir_.empty()) return;
        ::unlink(a_.c_str());
        ::unlink(b_.c_str());
        ::rmdir(dir_.c_str());
        dir_.clear();
    }

    std::string dir_, a_, b_;
};

// One connected AF_UNIX stream socket pair; the peer inherits its end across exec.
class SocketChannel final : public StreamChannel {
public:
    explicit SocketChannel(std::size_t size) : StreamChannel(size) {}
    ~SocketChannel() override {
        if (peer_fd_ >= 0) ::close(peer_fd_);
    }

    bool prepare(std::string& error) {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
            error = os_error("socketpair");
            return false;
        }
        in_fd_ = out_fd_ = fds[0];
        ::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
        peer_fd_ = fds[1];  // inherited by the peer
        return true;
    }
    void adopt(int fd) {
        in_fd_ = out_fd_ = fd;
        ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }

    std::vector<std::string> peer_args() const override { return {std::to_string(peer_fd_), ""}; }
    bool connect(std::string&) override {
        ::close(peer_fd_);  // the peer has its copy; keeping ours would hide its exit
        peer_fd_ = -1;
        return true;
    }

private:
    int peer_fd_ = -1;
};

// ---------------------------------------------------------------------------------------------
// POSIX message queues: queue a carries ping -> peer, b the answers. A message larger than the
// queue's unit goes as ceil(size / unit) queue messages.

class MqChannel final : public RawPing {
public:
    MqChannel(std::size_t size, std::uint32_t depth)
        : size_(size), unit_(std::min(size, mq_msgsize_max())), depth_(depth), buf_(message_buffer(size + unit_)) {}
    ~MqChannel() override {
        if (in_ != static_cast<mqd_t>(-1)) ::mq_close(in_);
        if (out_ != static_cast<mqd_t>(-1)) ::mq_close(out_);
        if (owner_) {
            ::mq_unlink(a_.c_str());
            ::mq_unlink(b_.c_str());
        }
    }

    bool prepare(std::string& error) {
        const std::string base = "/ferry-bench." + unique_suffix();
        a_ = base + ".a";
        b_ = base + ".b";
        struct mq_attr attr {};
        attr.mq_maxmsg = static_cast<long>(depth_);
        attr.mq_msgsize = static_cast<long>(unit_);
        owner_ = true;
        out_ = ::mq_open(a_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600, &attr);
        if (out_ == static_cast<mqd_t>(-1)) {
            error = os_error("mq_open " + a_);
            return false;
        }
        in_ = ::mq_open(b_.c_str(), O_CREAT | O_EXCL | O_RDONLY | O_CLOEXEC, 0600, &attr);
        if (in_ == static_cast<mqd_t>(-1)) {
            error = os_error("mq_open " + b_);
            return false;
        }
        return true;
    }
    bool open_peer(const std::string& a, const std::string& b, std::string& error) {
        in_ = ::mq_open(a.c_str(), O_RDONLY | O_CLOEXEC);
        out_ = ::mq_open(b.c_str(), O_WRONLY | O_CLOEXEC);
        if (in_ == static_cast<mqd_t>(-1) || out_ == static_cast<mqd_t>(-1)) {
            error = os_error("mq_open " + a + " / " + b);
            return false;
        }
        return true;
    }

    std::vector<std::string> peer_args() const override { return {a_, b_}; }
    bool connect(std::string&) override { return true; }

    bool send(const Header& h, std::string& error) override {
        std::memcpy(buf_.data(), &h, sizeof h);
        const timespec deadline = deadline_in_10s();
        for (std::size_t off = 0; off < size_; off += unit_) {
            const std::size_t n = std::min(unit_, size_ - off);
            while (::mq_timedsend(out_, buf_.data() + off, n, 0, &deadline) != 0) {
                if (errno == EINTR) continue;
                error = os_error("mq_timedsend");
                return false;
            }
        }
        return true;
    }
    bool receive(Header& h, std::string& error) override {
        const timespec deadline = deadline_in_10s();
        for (std::size_t off = 0; off < size_;) {
            const ssize_t r = ::mq_timedreceive(in_, buf_.data() + off, unit_, nullptr, &deadline);
            if (r < 0) {
                if (errno == EINTR) continue;
                error = os_error("mq_timedreceive");
                return false;
            }
            off += static_cast<std::size_t>(r);
        }
        std::memcpy(&h, buf_.data(), sizeof h);
        return true;
    }

private:
    // The only wall-clock deadline in the tree, on purpose: this baseline measures the calls as
    // plain POSIX code makes them (ferry's mq plugin waits with ppoll instead). It is a safety
    // net against a dead peer; a wall-clock step during a run stretches or cuts it.
    static timespec deadline_in_10s() {
        timespec ts{};
        ::clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += std::chrono::seconds(kReceiveTimeout).count();
        return ts;
    }

    std::size_t size_;
    std::size_t unit_;
    std::uint32_t depth_;
    std::vector<char> buf_;
    std::string a_, b_;
    bool owner_ = false;
    mqd_t in_ = static_cast<mqd_t>(-1);
    mqd_t out_ = static_cast<mqd_t>(-1);
};

// ---------------------------------------------------------------------------------------------
// Shared memory + futex: a memfd holding one single-producer single-consumer ring per direction.
// The producer writes the Header into the slot and bumps `head`; a consumer asleep on `head`
// gets a futex wake. A producer facing a full ring sleeps on `tail` the same way.

struct alignas(64) Ring {
    alignas(64) std::atomic<std::uint32_t> head;
    std::atomic<std::uint32_t> consumer_waiting;
    alignas(64) std::atomic<std::uint32_t> tail;
    std::atomic<std::uint32_t> producer_waiting;
};

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, Clock::time_point deadline) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return;
    const auto s = std::chrono::duration_cast<std::chrono::seconds>(left);
    timespec ts{static_cast<time_t>(s.count()),
                static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(left - s).count())};
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake(std::atomic<std::uint32_t>& word) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

// Blocks until `word` differs from `value`, sleeping on the futex with `waiting` raised.
bool wait_change(std::atomic<std::uint32_t>& word,
                 std::uint32_t value,
                 std::atomic<std::uint32_t>& waiting,
                 Clock::time_point deadline) {
    while (word.load(std::memory_order_acquire) == value) {
        waiting.store(1, std::memory_order_seq_cst);
        if (word.load(std::memory_order_seq_cst) == value) futex_wait(word, value, deadline);
        waiting.store(0, std::memory_order_relaxed);
        if (Clock::now() > deadline && word.load(std::memory_order_acquire) == value) return false;
    }
    return true;
}

// Spins (no system call, no sleep) until `word` differs from `value`; the clock is read every
// 4096 polls only, for the deadline.
bool spin_change(const std::atomic<std::uint32_t>& word, std::uint32_t value, Clock::time_point deadline) {
    for (std::uint32_t i = 1;; ++i) {
        if (word.load(std::memory_order_acquire) != value) return true;
        __builtin_ia32_pause();
        if (i % 4096 == 0 && Clock::now() > deadline) return word.load(std::memory_order_acquire) != value;
    }
}

class ShmChannel final : public RawPing {
public:
    // `spin`: both sides poll their ring (a plain spinning ring: the lower bound of a hand-over
    // between two CPUs); else they sleep on a futex when there is nothing to do.
    ShmChannel(std::size_t size, std::uint32_t depth, bool spin)
        : slot_(round_up(size, 64)), depth_(depth), total_(kControl + 2 * std::size_t{depth} * slot_), spin_(spin) {}
    ~ShmChannel() override {
        if (base_) ::munmap(base_, total_);
        if (fd_ >= 0) ::close(fd_);
        if (peer_fd_ >= 0) ::close(peer_fd_);
    }

    bool prepare(std::string& error) {
        const int fd = static_cast<int>(::syscall(SYS_memfd_create, "ferry-bench", 0));  // inherited by the peer
        if (fd < 0) {
            error = os_error("memfd_create");
            return false;
        }
        peer_fd_ = fd;
        if (::ftruncate(fd, static_cast<off_t>(total_)) != 0) {
            error = os_error("ftruncate memfd to " + std::to_string(total_) + " bytes");
            return false;
        }
        return map(fd, true, error);
    }
    bool open_peer(int fd, std::string& error) {
        fd_ = fd;
        ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        return map(fd, false, error);
    }

    std::vector<std::string> peer_args() const override { return {std::to_string(peer_fd_), ""}; }
    bool connect(std::string&) override {
        ::close(peer_fd_);
        peer_fd_ = -1;
        return true;
    }

    bool send(const Header& h, std::string& error) override {
        Ring& r = *out_;
        const std::uint32_t head = r.head.load(std::memory_order_relaxed);
        const auto deadline = Clock::now() + kReceiveTimeout;
        std::uint32_t tail;
        while (head - (tail = r.tail.load(std::memory_order_acquire)) >= depth_) {
            if (spin_ ? !spin_change(r.tail, tail, deadline) : !wait_change(r.tail, tail, r.producer_waiting, deadline)) {
                error = "shm ring full for 10 s";
                return false;
            }
        }
        std::memcpy(out_slots_ + std::size_t{head % depth_} * slot_, &h, sizeof h);
        if (spin_) {
            r.head.store(head + 1, std::memory_order_release);
            return true;
        }
        r.head.store(head + 1, std::memory_order_seq_cst);
        if (r.consumer_waiting.load(std::memory_order_seq_cst)) futex_wake(r.head);
        return true;
    }

    bool receive(Header& h, std::string& error) override {
        Ring& r = *in_;
        const std::uint32_t tail = r.tail.load(std::memory_order_relaxed);
        if (r.head.load(std::memory_order_acquire) == tail &&
            !(spin_ ? spin_change(r.head, tail, Clock::now() + kReceiveTimeout)
                    : wait_change(r.head, tail, r.consumer_waiting, Clock::now() + kReceiveTimeout))) {
            error = "no message in the shm ring within 10 s";
            return false;
        }
        std::memcpy(&h, in_slots_ + std::size_t{tail % depth_} * slot_, sizeof h);
        if (spin_) {
            r.tail.store(tail + 1, std::memory_order_release);
            return true;
        }
        r.tail.store(tail + 1, std::memory_order_seq_cst);
        if (r.producer_waiting.load(std::memory_order_seq_cst)) futex_wake(r.tail);
        return true;
    }

private:
    static constexpr std::size_t kControl = 4096;
    static std::size_t round_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

    bool map(int fd, bool ping_side, std::string& error) {
        void* p = ::mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            error = os_error("mmap memfd of " + std::to_string(total_) + " bytes");
            return false;
        }
        base_ = static_cast<char*>(p);
        Ring* rings = reinterpret_cast<Ring*>(base_);  // zero-filled memfd: valid initial state
        char* slots_a = base_ + kControl;
        char* slots_b = slots_a + std::size_t{depth_} * slot_;
        out_ = ping_side ? &rings[0] : &rings[1];
        in_ = ping_side ? &rings[1] : &rings[0];
        out_slots_ = ping_side ? slots_a : slots_b;
        in_slots_ = ping_side ? slots_b : slots_a;
        return true;
    }

    std::size_t slot_;
    std::uint32_t depth_;
    std::size_t total_;
    bool spin_;
    int fd_ = -1;
    int peer_fd_ = -1;
    char* base_ = nullptr;
    Ring* out_ = nullptr;
    Ring* in_ = nullptr;
    char* out_slots_ = nullptr;
    char* in_slots_ = nullptr;
};

static_assert(2 * sizeof(Ring) <= 4096, "the rings fit in the control page");

}  // namespace

std::size_t mq_msgsize_max() { return read_proc("/proc/sys/fs/mqueue/msgsize_max", 8192); }
std::size_t mq_msg_max() { return read_proc("/proc/sys/fs/mqueue/msg_max", 10); }

std::unique_ptr<RawPing> make_raw_ping(const std::string& mechanism,
                                       std::size_t size,
                                       std::uint32_t depth,
                                       std::string& error) {
    if (mechanism == "pipe") {
        auto c = std::make_unique<FifoChannel>(size);
        if (c->prepare(error)) return c;
    } else if (mechanism == "uds") {
        auto c = std::make_unique<SocketChannel>(size);
        if (c->prepare(error)) return c;
    } else if (mechanism == "mq") {
        auto c = std::make_unique<MqChannel>(size, depth);
        if (c->prepare(error)) return c;
    } else if (mechanism == "shm" || mechanism == "shm-spin") {
        auto c = std::make_unique<ShmChannel>(size, depth, mechanism == "shm-spin");
        if (c->prepare(error)) return c;
#ifdef FERRY_BENCH_DDS
    } else if (mechanism == "dds") {
        return make_dds_ping(size, error);
#endif
    } else {
        error = "no raw baseline for '" + mechanism + "'";
    }
    return nullptr;
}

std::unique_ptr<Channel> make_raw_peer(const std::string& mechanism,
                                       std::size_t size,
                                       std::uint32_t depth,
                                       const std::string& a,
                                       const std::string& b,
                                       std::string& error) {
    if (mechanism == "pipe") {
        auto c = std::make_unique<FifoChannel>(size);
        if (c->open_peer(a, b, error)) return c;
    } else if (mechanism == "uds") {
        auto c = std::make_unique<SocketChannel>(size);
        c->adopt(std::stoi(a));
        return c;
    } else if (mechanism == "mq") {
        auto c = std::make_unique<MqChannel>(size, depth);
        if (c->open_peer(a, b, error)) return c;
    } else if (mechanism == "shm" || mechanism == "shm-spin") {
        auto c = std::make_unique<ShmChannel>(size, depth, mechanism == "shm-spin");
        if (c->open_peer(std::stoi(a), error)) return c;
#ifdef FERRY_BENCH_DDS
    } else if (mechanism == "dds") {
        (void)b;
        return make_dds_peer(size, a, error);
#endif
    } else {
        error = "no raw baseline for '" + mechanism + "'";
    }
    return nullptr;
}

}  // namespace bench
