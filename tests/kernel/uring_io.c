/*
 * Moves data over a socket with io_uring only and reports what moved.
 *
 *   uring_io tcp|udp HOST PORT SEND_OP RECV_OP TOTAL CHUNK
 *
 * Connects with connect(2), then sends TOTAL bytes in CHUNK-sized requests
 * with SEND_OP (send, write or sendmsg), then receives TOTAL bytes with
 * RECV_OP (recv, read or recvmsg). For UDP every chunk is one datagram and
 * the peer is expected to echo each one. Each request is submitted alone
 * and its completion reaped before the next, so the counts below are
 * exactly what the completions reported.
 *
 * Prints: "<bytes_sent> <packets_sent> <bytes_recv> <packets_recv>\n".
 */
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static struct io_uring ring;

static int one(const char *op, int fd, char *buf, size_t len)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct io_uring_cqe *cqe;
	int res;

	if (!strcmp(op, "send"))
		io_uring_prep_send(sqe, fd, buf, len, 0);
	else if (!strcmp(op, "recv"))
		io_uring_prep_recv(sqe, fd, buf, len, 0);
	else if (!strcmp(op, "write"))
		io_uring_prep_write(sqe, fd, buf, len, -1);
	else if (!strcmp(op, "read"))
		io_uring_prep_read(sqe, fd, buf, len, -1);
	else if (!strcmp(op, "sendmsg"))
		io_uring_prep_sendmsg(sqe, fd, &msg, 0);
	else if (!strcmp(op, "recvmsg"))
		io_uring_prep_recvmsg(sqe, fd, &msg, 0);
	else {
		fprintf(stderr, "unknown op %s\n", op);
		exit(2);
	}
	res = io_uring_submit(&ring);
	if (res != 1) {
		fprintf(stderr, "io_uring_submit: %s\n", strerror(-res));
		exit(3);
	}
	res = io_uring_wait_cqe(&ring, &cqe);
	if (res < 0) {
		fprintf(stderr, "io_uring_wait_cqe: %s\n", strerror(-res));
		exit(3);
	}
	res = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	if (res <= 0) {
		fprintf(stderr, "%s returned %d (%s)\n", op, res, res ? strerror(-res) : "EOF");
		exit(4);
	}
	return res;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sslen;
	long total, chunk, sent = 0, recvd = 0, psent = 0, precv = 0;
	int udp, fd, res;
	char *buf;

	if (argc != 8) {
		fprintf(stderr, "usage: %s tcp|udp HOST PORT SEND_OP RECV_OP TOTAL CHUNK\n", argv[0]);
		return 2;
	}
	udp = !strcmp(argv[1], "udp");
	total = atol(argv[6]);
	chunk = atol(argv[7]);
	if (strchr(argv[2], ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(atoi(argv[3]));
		inet_pton(AF_INET6, argv[2], &a->sin6_addr);
		sslen = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(atoi(argv[3]));
		inet_pton(AF_INET, argv[2], &a->sin_addr);
		sslen = sizeof(*a);
	}
	fd = socket(ss.ss_family, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
		perror("socket/connect");
		return 3;
	}
	res = io_uring_queue_init(8, &ring, 0);
	if (res < 0) {
		fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-res));
		return 5;
	}
	buf = malloc(chunk);
	memset(buf, 'u', chunk);
	/* tell the peer we are connected, then wait until it says go */
	printf("connected\n");
	fflush(stdout);
	if (getchar() == EOF)
		return 6;

	while (sent < total) {
		long n = total - sent < chunk ? total - sent : chunk;
		sent += one(argv[4], fd, buf, n);
		psent++;
	}
	while (recvd < total) {
		long n = udp ? chunk : (total - recvd < chunk ? total - recvd : chunk);
		recvd += one(argv[5], fd, buf, n);
		precv++;
	}
	printf("%ld %ld %ld %ld\n", sent, psent, recvd, precv);
	io_uring_queue_exit(&ring);
	return 0;
}
