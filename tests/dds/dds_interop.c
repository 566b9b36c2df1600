/* dds_interop: a DDS program written against Cyclone DDS's C API alone (no ferry library) that
 * reads and writes ferry topics using only what plugins/dds/README.md documents: the DDS type
 * ferry::dds::Frame (ferry_frame.idl), the topic-name mapping, and the ferry frame header inside
 * `payload`. Messages use the examples' payload (examples/checksum.hpp) as type "bytes", so the
 * examples' talker and listener are its peers.
 *
 *   dds_interop sub <dds domain id> <ferry domain> <topic> <count> [timeout s]
 *       exits 0 once <count> intact messages arrived in order; last line
 *       "received N corrupt C out_of_order K"
 *   dds_interop pub <dds domain id> <ferry domain> <topic> <count> [size]
 *       waits for a reader, publishes <count> messages, waits for their acknowledgement
 *   dds_interop watch <dds domain id> <ferry domain> <topic> <timeout s> [interface]
 *       prints "matched" once a writer is there, then "unmatched at <CLOCK_REALTIME ns>" when
 *       DDS has forgotten every writer (e.g. its process was SIGKILLed and its lease ran out)
 *
 * Cyclone is restricted to the loopback interface (tests keep traffic on the machine), or to
 * [interface] in watch mode. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dds/dds.h>

#include "ferry_frame.h"

#define FRAME_HEADER 64u
#define FRAME_MAGIC 0x31595246u /* "FRY1", little-endian */

static uint64_t fnv1a64(const char* s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; ++s) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static uint32_t fnv1a32(const uint8_t* p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

/* "ferry_" + escape(domain) + "/" + escape(topic); escape keeps [A-Za-z0-9/], writes any other
 * byte as '_' and two upper-case hex digits. */
static void escape(const char* s, char* out) {
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; ++s) {
        const unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/') {
            *out++ = (char)c;
        } else {
            *out++ = '_';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        }
    }
    *out = '\0';
}

static void put64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); } /* the header is little-endian */
static void put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
static uint64_t get64(const uint8_t* p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get32(const uint8_t* p) { uint32_t v; memcpy(&v, p, 4); return v; }

int main(int argc, char** argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: dds_interop sub|pub <dds domain id> <ferry domain> <topic> <count> [timeout|size]\n");
        return 2;
    }
    const int publish = strcmp(argv[1], "pub") == 0;
    const dds_domainid_t domain_id = (dds_domainid_t)atoi(argv[2]);
    const unsigned long count = strtoul(argv[5], NULL, 10);
    char name[1024], d[256], t[700];
    if (strlen(argv[3]) > 80 || strlen(argv[4]) > 230) return 2;
    escape(argv[3], d);
    escape(argv[4], t);
    snprintf(name, sizeof name, "ferry_%s/%s", d, t);
    setvbuf(stdout, NULL, _IOLBF, 0);

    const int watch = strcmp(argv[1], "watch") == 0;
    char config[1024];
    if (watch && argc > 6 && strlen(argv[6]) < 64)
        snprintf(config, sizeof config, "<General><Interfaces><NetworkInterface name=\"%s\"/></Interfaces></General>", argv[6]);
    else
        snprintf(config, sizeof config, "%s",
                 "<General><Interfaces><NetworkInterface name=\"lo\"/></Interfaces><AllowMulticast>false</AllowMulticast>"
                 "</General><Discovery><ParticipantIndex>auto</ParticipantIndex>"
                 "<MaxAutoParticipantIndex>99</MaxAutoParticipantIndex></Discovery>");
    if (dds_create_domain(domain_id, config) < 0) return 3;
    const dds_entity_t pp = dds_create_participant(domain_id, NULL, NULL);
    const dds_entity_t topic = dds_create_topic(pp, &ferry_dds_Frame_desc, name, NULL, NULL);
    if (pp < 0 || topic < 0) {
        fprintf(stderr, "dds_interop: cannot create topic %s\n", name);
        return 3;
    }
    dds_qos_t* qos = dds_create_qos();
    dds_qset_reliability(qos, DDS_RELIABILITY_RELIABLE, DDS_SECS(1));
    dds_qset_history(qos, DDS_HISTORY_KEEP_ALL, 0);
    int code = 1;

    if (watch) {
        const dds_entity_t r = dds_create_reader(pp, topic, qos, NULL);
        const dds_time_t deadline = dds_time() + (dds_duration_t)(atof(argv[5]) * 1e9);
        dds_subscription_matched_status_t st;
        int matched = 0;
        while (dds_time() < deadline) {
            dds_get_subscription_matched_status(r, &st);
            if (!matched && st.current_count > 0) {
                matched = 1;
                printf("matched\n");
            } else if (matched && st.current_count == 0) {
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                printf("unmatched at %llu\n", (unsigned long long)now.tv_sec * 1000000000ull + (unsigned long long)now.tv_nsec);
                code = 0;
                break;
            }
            dds_sleepfor(DDS_MSECS(20));
        }
        /* Not every message of a stream need be taken: the reader only watches. */
    } else if (publish) {
        const size_t size = argc > 6 ? strtoul(argv[6], NULL, 10) : 64;
        const dds_entity_t w = dds_create_writer(pp, topic, qos, NULL);
        dds_publication_matched_status_t st;
        for (int i = 0; i < 400; ++i) { /* up to 20 s for a reader */
            dds_get_publication_matched_status(w, &st);
            if (st.current_count > 0) break;
            dds_sleepfor(DDS_MSECS(50));
        }
        if (st.current_count == 0) {
            fprintf(stderr, "dds_interop: no reader on %s\n", name);
            return 1;
        }
        uint8_t* buf = calloc(1, FRAME_HEADER + size);
        const uint64_t publisher_id = 0xD5D5000000000000ull | (uint64_t)time(NULL);
        unsigned long sent = 0;
        for (unsigned long i = 0; i < count; ++i) {
            uint8_t* h = buf;
            uint8_t* m = buf + FRAME_HEADER;
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            put32(h + 0, FRAME_MAGIC);
            put32(h + 4, 1);                       /* version */
            put64(h + 8, size);                    /* payload_size */
            put64(h + 16, i + 1);                  /* sequence */
            put64(h + 24, publisher_id);           /* publisher_id */
            put64(h + 32, (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec);
            put64(h + 40, fnv1a64("bytes"));       /* type_hash of ferry::Bytes */
            /* the examples' payload: index, FNV-1a of the rest, a pattern */
            const uint64_t index = i;
            memcpy(m, &index, 8);
            for (size_t k = 12; k < size; ++k) m[k] = (uint8_t)((index + k) * 131u);
            put32(m + 8, fnv1a32(m + 12, size - 12));
            ferry_dds_Frame f;
            f.number = i + 1;
            f.payload._buffer = buf;
            f.payload._length = f.payload._maximum = (uint32_t)(FRAME_HEADER + size);
            f.payload._release = false;
            if (dds_write(w, &f) == DDS_RETCODE_OK) ++sent;
        }
        const dds_return_t acked = dds_wait_for_acks(w, DDS_SECS(10));
        printf("sent %lu acked %s\n", sent, acked == DDS_RETCODE_OK ? "yes" : "no");
        free(buf);
        code = sent == count && acked == DDS_RETCODE_OK ? 0 : 1;
    } else {
        const double timeout = argc > 6 ? atof(argv[6]) : 30.0;
        const dds_entity_t r = dds_create_reader(pp, topic, qos, NULL);
        const dds_entity_t ws = dds_create_waitset(pp);
        dds_waitset_attach(ws, dds_create_readcondition(r, DDS_ANY_STATE), 0);
        const dds_time_t deadline = dds_time() + (dds_duration_t)(timeout * 1e9);
        unsigned long received = 0, corrupt = 0, out_of_order = 0;
        uint64_t last_sequence = 0, last_index = 0;
        const uint64_t bytes_hash = fnv1a64("bytes");
        while (received < count && dds_time() < deadline) {
            dds_waitset_wait_until(ws, NULL, 0, deadline);
            void* samples[1] = {NULL};
            dds_sample_info_t info[1];
            while (dds_take(r, samples, info, 1, 1) > 0) {
                if (info[0].valid_data) {
                    const ferry_dds_Frame* f = samples[0];
                    const uint8_t* p = f->payload._buffer;
                    const uint32_t n = f->payload._length;
                    ++received;
                    if (n < FRAME_HEADER + 12 || get32(p) != FRAME_MAGIC || get32(p + 4) != 1 ||
                        get64(p + 8) != n - FRAME_HEADER || get64(p + 40) != bytes_hash ||
                        get32(p + FRAME_HEADER + 8) != fnv1a32(p + FRAME_HEADER + 12, n - FRAME_HEADER - 12)) {
                        ++corrupt;
                    } else {
                        const uint64_t sequence = get64(p + 16), index = get64(p + FRAME_HEADER);
                        if (received > 1 && (sequence <= last_sequence || index <= last_index)) ++out_of_order;
                        last_sequence = sequence;
                        last_index = index;
                        if (count <= 20) printf("got #%llu (%u bytes, sequence %llu)\n", (unsigned long long)index,
                                                n - FRAME_HEADER, (unsigned long long)sequence);
                    }
                }
                dds_return_loan(r, samples, 1);
                samples[0] = NULL;
            }
        }
        printf("received %lu corrupt %lu out_of_order %lu\n", received, corrupt, out_of_order);
        code = received == count && corrupt == 0 && out_of_order == 0 ? 0 : 1;
    }
    dds_delete_qos(qos);
    dds_delete(DDS_CYCLONEDDS_HANDLE);
    return code;
}
