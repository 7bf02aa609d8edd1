/*
 * A syscall-heavy loop for bench/overhead.py: N iterations of one-byte UDP
 * traffic on 127.0.0.1, between two sockets of this process.
 *
 *   udp_send_loop sendrecv N WARMUP   unconnected sendto() to the bound
 *                                     receiver, then recv() of that datagram
 *   udp_send_loop send     N WARMUP   connected socket, send() only
 *   udp_send_loop sendto   N WARMUP   unconnected socket, sendto() only
 *
 * In the send-only workloads the receiver never reads, so the kernel drops
 * what does not fit its receive buffer; every send still succeeds.
 *
 * Prints one line:
 *   "<ns per iteration> <iterations incl. warm-up> <bytes sent> <bytes received>"
 * Only the N measured iterations are timed (CLOCK_MONOTONIC).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 4 ||
        (strcmp(argv[1], "send") && strcmp(argv[1], "sendto") && strcmp(argv[1], "sendrecv"))) {
        fprintf(stderr, "usage: %s sendrecv|send|sendto N WARMUP\n", argv[0]);
        return 2;
    }
    int use_send = strcmp(argv[1], "send") == 0;
    int do_recv = strcmp(argv[1], "sendrecv") == 0;
    long n = atol(argv[2]), warmup = atol(argv[3]);

    int rx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (rx < 0 || bind(rx, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        getsockname(rx, (struct sockaddr *)&addr, &len) < 0) {
        perror("receiver socket");
        return 1;
    }
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    if (tx < 0 || (use_send && connect(tx, (struct sockaddr *)&addr, sizeof(addr)) < 0)) {
        perror("sender socket");
        return 1;
    }

    char byte = 'x', buf[16];
    long long sent = 0, received = 0, start = 0;
    for (long i = 0; i < warmup + n; i++) {
        if (i == warmup)
            start = now_ns();
        ssize_t r = use_send ? send(tx, &byte, 1, 0)
                             : sendto(tx, &byte, 1, 0, (struct sockaddr *)&addr, sizeof(addr));
        if (r != 1) {
            perror("send");
            return 1;
        }
        sent += r;
        if (do_recv) {
            /* Blocking: on loopback the datagram is normally queued already. */
            r = recv(rx, buf, sizeof(buf), 0);
            if (r != 1) {
                perror("recv");
                return 1;
            }
            received += r;
        }
    }
    long long elapsed = now_ns() - start;
    printf("%.2f %ld %lld %lld\n", (double)elapsed / (double)(n > 0 ? n : 1), warmup + n, sent,
           received);
    close(tx);
    close(rx);
    return 0;
}
