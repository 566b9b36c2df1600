#include "support/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ferry::test {

std::string unique_domain() {
    static std::atomic<int> counter{0};
    return "t" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + time_bound(timeout);
    while (true) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

Child Child::fork(const std::function<int()>& body) {
    Child c;
    c.pid_ = ::fork();
    if (c.pid_ < 0) throw std::runtime_error("fork failed");
    if (c.pid_ == 0) {
        int code = 99;
        try {
            code = body();
        } catch (...) {
            code = 98;
        }
        ::_exit(code);
    }
    return c;
}

Child Child::spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env) {
    Child c;
    char tmpl[] = "/tmp/ferry-test-out-XXXXXX";
    const int out = ::mkstemp(tmpl);
    if (out < 0) throw std::runtime_error("mkstemp failed");
    c.output_path_ = tmpl;
    // argv and the environment are built before fork: the child only calls dup2 and execve and
    // allocates nothing, since an allocator lock another thread held at the fork (ASan's is not
    // fork-safe) would hang it.
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string entry = *e;
        if (env.count(entry.substr(0, entry.find('='))) == 0) env_strings.push_back(entry);
    }
    for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    c.pid_ = ::fork();
    if (c.pid_ < 0) throw std::runtime_error("fork failed");
    if (c.pid_ == 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
        ::execve(args[0], args.data(), envp.data());
        ::_exit(127);
    }
    ::close(out);
    return c;
}

Child::Child(Child&& o) noexcept { *this = std::move(o); }

Child& Child::operator=(Child&& o) noexcept {
    if (this != &o) {
        pid_ = o.pid_;
        status_ = o.status_;
        reaped_ = o.reaped_;
        output_path_ = std::move(o.output_path_);
        o.pid_ = -1;
        o.output_path_.clear();
    }
    return *this;
}

Child::~Child() {
    if (pid_ > 0 && !reaped_) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status_, 0);
    }
    if (!output_path_.empty()) ::unlink(output_path_.c_str());
}

bool Child::running() {
    if (pid_ <= 0 || reaped_) return false;
    const pid_t r = ::waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) reaped_ = true;
    return !reaped_;
}

void Child::kill(int sig) {
    if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
}

bool Child::stop(std::chrono::milliseconds timeout) {
    if (pid_ <= 0 || reaped_) return false;
    ::kill(pid_, SIGSTOP);
    bool stopped = false;
    wait_until(
        [&] {
            int st = 0;
            const pid_t r = ::waitpid(pid_, &st, WNOHANG | WUNTRACED);
            if (r != pid_) return false;
            if (WIFSTOPPED(st)) return stopped = true;
            status_ = st;  // it ended instead
            reaped_ = true;
            return true;
        },
        timeout);
    return stopped;
}

int Child::wait(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return -1;
    if (!reaped_) {
        const bool ended = wait_until([this] { return !running(); }, timeout);
        if (!ended) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status_, 0);
            reaped_ = true;
            return -1;
        }
    }
    if (WIFEXITED(status_)) return WEXITSTATUS(status_);
    if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
    return -1;
}

std::string Child::output() const {
    std::ifstream in(output_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string bin_path(const std::string& name) { return std::string(FERRY_TEST_BIN_DIR) + "/" + name; }

std::vector<std::string> leftovers(const std::string& dir, const std::string& domain) {
    std::vector<std::string> found;
    const std::string needle = "ferry." + domain + ".";
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
            const std::string name = e->d_name;
            if (name.find(needle) != std::string::npos) found.push_back(name);
        }
        ::closedir(d);
    }
    return found;
}

}  // namespace ferry::test

#ifdef __SANITIZE_ADDRESS__
// Read by ASan at start-up in every test program (this file is always linked in: Child lives
// here). Freed memory waits in ASan's quarantine before reuse, 256 MiB of it by default, which
// would make every resident-memory bound a test asserts a bound on the quarantine instead.
// 32 MiB still catches a use after free of any recent block. ASAN_OPTIONS keys set in the
// environment still win.
extern "C" const char* __asan_default_options() { return "quarantine_size_mb=32"; }
#endif

namespace ferry::test {

Child spawn_program(const std::string& program, std::vector<std::string> args,
                    const std::map<std::string, std::string>& env) {
    args.insert(args.begin(), bin_path(program));
    return Child::spawn(args, env);
}

ProgramResult run_program(const std::string& program, const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout) {
    Child c = spawn_program(program, args, env);
    const int code = c.wait(timeout);
    return {code, c.output()};
}

}  // namespace ferry::test
