/*
 * core_latency: how long a cache line takes to go from one CPU to another and back, in ns.
 * `compare_ort.py --near-cores` builds it and runs it around every timed step, so that steps
 * timed while the two CPUs that run the engines' threads sit far apart are timed again.
 *
 * On a virtual machine the host may move the virtual CPUs: on machine D (2 virtual CPUs) the
 * round trip between CPU 0 and CPU 1 reads about 55 ns for most of the time and about 320 ns
 * for stretches of up to several seconds, and a two-thread pass timed in such a stretch takes
 * up to twice as long (MobileNetV2 10.2 ms against 4.5-5.5).
 *
 * Two threads, pinned to the two CPUs named (default 0 and 1), hand a counter back and forth
 * through one cache line, in bursts of 2,000 round trips; the median burst's time per round
 * trip is printed. Runs about `bursts` x 0.1-0.7 ms.
 *
 *     cc -O2 -pthread -o core_latency scripts/core_latency.c
 *     ./core_latency [cpu_a cpu_b [bursts]]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TRIPS 2000
#define MAX_BURSTS 1000

/* The counter: even while the first CPU holds the turn, odd while the second does; -1 ends. */
static _Alignas(64) _Atomic long turn;

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

static void *answer(void *cpu) {
    if (pin(*(int *)cpu) != 0) {
        perror("core_latency: pinning the second thread");
        exit(2);
    }
    for (;;) {
        long v;
        while (((v = atomic_load(&turn)) & 1) == 0) {
        }
        if (v < 0) {
            return NULL;
        }
        atomic_store(&turn, v + 1);
    }
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int a = argc > 2 ? atoi(argv[1]) : 0;
    int b = argc > 2 ? atoi(argv[2]) : 1;
    int bursts = argc > 3 ? atoi(argv[3]) : 15;
    if (bursts < 1 || bursts > MAX_BURSTS || a < 0 || b < 0 || a == b) {
        fprintf(stderr, "usage: core_latency [cpu_a cpu_b [bursts, 1 to %d]] (two distinct CPUs)\n",
                MAX_BURSTS);
        return 2;
    }
    if (pin(a) != 0) {
        perror("core_latency: pinning the first thread");
        return 2;
    }
    pthread_t other;
    if (pthread_create(&other, NULL, answer, &b) != 0) {
        perror("core_latency: starting the second thread");
        return 2;
    }
    static double per_trip[MAX_BURSTS];
    for (int k = 0; k < bursts; k++) {
        double start = now_ns();
        for (int i = 0; i < TRIPS; i++) {
            long v = atomic_load(&turn);
            atomic_store(&turn, v + 1);
            while (atomic_load(&turn) == v + 1) {
            }
        }
        per_trip[k] = (now_ns() - start) / TRIPS;
    }
    atomic_store(&turn, -1);
    pthread_join(other, NULL);
    qsort(per_trip, bursts, sizeof per_trip[0], by_value);
    printf("%.0f\n", per_trip[bursts / 2]);
    return 0;
}
