/*
 * Keeps N distinct UDP flows alive for bench/footprint.py.
 *
 * N receiver sockets of this process are bound on 127.0.0.1 (ports chosen by
 * the kernel, smallest receive buffer, never read: the kernel drops what does
 * not fit). One unconnected socket sends one-byte datagrams to them in turn,
 * RATE datagrams per second, so every flow sees a datagram every N/RATE
 * seconds. To a monitor that is N flows of this process: same remote address,
 * N remote ports.
 *
 * With "distinct", receiver i is bound on a loopback address of its own
 * instead (all of 127/8 is loopback on Linux): 127.1.(i / 254).(i % 254 + 1),
 * so N flows to N remote addresses. bench/footprint.py names them the same
 * way (peer_address there).
 *
 *   udp_flows N RATE [distinct]
 *
 * Prints "ready" once every flow has had its first datagram, then runs until
 * SIGINT or SIGTERM and prints "<datagrams sent> <seconds>" (after "ready").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICKS_PER_SECOND 200 /* pacing granularity: 5 ms */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 127.1.(i / 254).(i % 254 + 1), in host byte order */
static uint32_t peer_address(long i)
{
    return (127u << 24) | (1u << 16) | ((uint32_t)(i / 254) << 8) | (uint32_t)(i % 254 + 1);
}

static int raise_fd_limit(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if ((long)rl.rlim_cur >= need)
        return 0;
    rl.rlim_cur = (rlim_t)need;
    if ((long)rl.rlim_max < need)
        rl.rlim_max = (rlim_t)need; /* root may raise the hard limit */
    return setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "distinct") == 0)) {
        fprintf(stderr, "usage: %s N RATE [distinct]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]), rate = atol(argv[2]);
    int distinct = argc == 4;
    if (n < 1 || rate < 1 || (distinct && n > 254L * 256)) {
        fprintf(stderr, "N and RATE must be positive (N at most 65024 with distinct)\n");
        return 2;
    }
    if (raise_fd_limit(n + 16) < 0) {
        perror("setrlimit(RLIMIT_NOFILE)");
        return 1;
    }

    struct sockaddr_in *dest = calloc((size_t)n, sizeof(*dest));
    if (dest == NULL) {
        perror("calloc");
        return 1;
    }
    int small = 1; /* the kernel rounds it up to its minimum */
    for (long i = 0; i < n; i++) {
        int rx = socket(AF_INET, SOCK_DGRAM, 0);
        dest[i].sin_family = AF_INET;
        dest[i].sin_addr.s_addr = htonl(distinct ? peer_address(i) : INADDR_LOOPBACK);
        socklen_t len = sizeof(dest[i]);
        if (rx < 0 || setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) < 0 ||
            bind(rx, (struct sockaddr *)&dest[i], sizeof(dest[i])) < 0 ||
            getsockname(rx, (struct sockaddr *)&dest[i], &len) < 0) {
            perror("receiver socket");
            return 1;
        }
    }
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    if (tx < 0) {
        perror("sender socket");
        return 1;
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Send in ticks of rate/TICKS_PER_SECOND datagrams on an absolute
     * schedule, so a late tick is made up by the next ones. */
    long per_tick = rate / TICKS_PER_SECOND > 0 ? rate / TICKS_PER_SECOND : 1;
    long tick_ns = (long)(1e9 * (double)per_tick / (double)rate);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    double start = now_s();
    long long sent = 0;
    long i = 0;
    int announced = 0;
    char byte = 'x';
    while (!stop) {
        for (long k = 0; k < per_tick; k++) {
            if (sendto(tx, &byte, 1, 0, (struct sockaddr *)&dest[i], sizeof(dest[i])) != 1 &&
                errno != EINTR) {
                perror("sendto");
                return 1;
            }
            sent++;
            if (++i == n) {
                i = 0;
                if (!announced) {
                    printf("ready\n");
                    fflush(stdout);
                    announced = 1;
                }
            }
        }
        next.tv_nsec += tick_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        while (!stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
            ;
    }
    printf("%lld %.3f\n", sent, now_s() - start);
    return 0;
}
