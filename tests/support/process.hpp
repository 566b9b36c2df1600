// Test support for multi-process tests: real children (fork or fork+exec), real signals,
// per-test domains, and waiting on a condition with a deadline (never a bare sleep).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace ferry::test {

// A domain no other test (or earlier run) uses: "t<pid>_<n>".
std::string unique_domain();

#ifndef FERRY_TEST_TIME_SCALE
#define FERRY_TEST_TIME_SCALE 1
#endif
// An upper time bound a test asserts, for this build: as written in a normal build, multiplied
// by FERRY_TEST_TIME_SCALE in a sanitizer build (tests/CMakeLists.txt), where instrumented code
// runs several times slower. Lower bounds ("waited at least") are never scaled.
template <class Rep, class Period>
constexpr std::chrono::duration<Rep, Period> time_bound(std::chrono::duration<Rep, Period> d) {
    return d * FERRY_TEST_TIME_SCALE;
}

// Polls `condition` every millisecond until it holds or `timeout` passes (time_bound(timeout)
// in a sanitizer build).
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

class Child {
public:
    // Runs `body` in a forked child; its return value becomes the exit code.
    static Child fork(const std::function<int()>& body);
    // fork + exec of argv[0] (a path) with extra environment variables; stdout and stderr go
    // to a temporary file read by output().
    static Child spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});

    Child() = default;
    Child(Child&& o) noexcept;
    Child& operator=(Child&& o) noexcept;
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child();  // SIGKILLs and reaps a child still running

    pid_t pid() const { return pid_; }
    bool running();
    void kill(int sig);
    // SIGSTOP, then waits until every thread of the child is stopped (waitpid WUNTRACED):
    // kill() alone returns before a thread running on another CPU has stopped.
    bool stop(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
    // Exit code, or 128+signal if killed; -1 (after SIGKILL) if it did not end in time.
    int wait(std::chrono::milliseconds timeout);
    // What an exec'd child printed (stdout and stderr), after wait().
    std::string output() const;

private:
    pid_t pid_ = -1;
    int status_ = -1;
    bool reaped_ = false;
    std::string output_path_;
};

// Path of a program built into the build tree's bin directory.
std::string bin_path(const std::string& name);

// A program of the build tree's bin directory, spawned with `env` added to the environment.
Child spawn_program(const std::string& program, std::vector<std::string> args,
                    const std::map<std::string, std::string>& env);

struct ProgramResult {
    int code;  // as Child::wait
    std::string output;
};
// spawn_program, then waits up to `timeout` for it to end: its exit code and what it printed.
ProgramResult run_program(const std::string& program, const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout);

// Names of entries in `dir` whose name contains "ferry.<domain>." (for leak checks).
std::vector<std::string> leftovers(const std::string& dir, const std::string& domain);

}  // namespace ferry::test
