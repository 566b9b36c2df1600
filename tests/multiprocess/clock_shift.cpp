// LD_PRELOAD shim: the process sees the wall clock (CLOCK_REALTIME, gettimeofday, time) shifted
// by FERRY_TEST_CLOCK_SHIFT seconds (e.g. 3600 or -3600), as after a wall-clock step. The
// monotonic clocks are untouched. Used by test_wall_clock; the host's clock is never changed.
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

namespace {
long shift_seconds() {
    static const long shift = [] {
        const char* s = std::getenv("FERRY_TEST_CLOCK_SHIFT");
        return s != nullptr ? std::strtol(s, nullptr, 10) : 0L;
    }();
    return shift;
}
}  // namespace

extern "C" {

__attribute__((visibility("default"))) int clock_gettime(clockid_t id, struct timespec* ts) {
    const long r = ::syscall(SYS_clock_gettime, id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += shift_seconds();
    return static_cast<int>(r);
}

__attribute__((visibility("default"))) int gettimeofday(struct timeval* tv, void* tz) {
    const long r = ::syscall(SYS_gettimeofday, tv, tz);
    if (r == 0) tv->tv_sec += shift_seconds();
    return static_cast<int>(r);
}

__attribute__((visibility("default"))) time_t time(time_t* out) {
    struct timespec ts {};
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != nullptr) *out = ts.tv_sec;
    return ts.tv_sec;
}

}  // extern "C"
