/* netmon: per-process, per-flow network accounting.
 *
 * Two probe modes, chosen by user space with -D:
 *   NETMON_MODE_SOCKET   sock:sock_send_length / sock:sock_recv_length count
 *                        every socket-layer send and receive (any syscall,
 *                        sendfile, splice to a socket, io_uring); a few syscall
 *                        tracepoints add what the socket layer cannot see.
 *   NETMON_MODE_SYSCALLS sys_enter_* / sys_exit_* only, for kernels without
 *                        those tracepoints.
 * Counting uses what moved (return values), never the requested length.
 *
 * Offsets of fields that differ between kernel versions (OFF_*) come from the
 * running kernel's BTF, passed in by user space.
 */
#include "netmon.h"

/* Stable ABI values, defined here rather than pulled in with the large
 * kernel headers that define them (which triples the compile time). */
#define NETMON_AF_INET 2
#define NETMON_AF_INET6 10
#define NETMON_AF_PACKET 17
#define NETMON_IPPROTO_ICMP 1
#define NETMON_IPPROTO_TCP 6
#define NETMON_IPPROTO_UDP 17
#define NETMON_IPPROTO_ICMPV6 58
#define NETMON_IPPROTO_UDPLITE 136
#define NETMON_MSG_PEEK 2
#define NETMON_SOCK_RAW 3
#define NETMON_SOCK_BINDPORT_LOCK 8
#define NETMON_PF_KTHREAD 0x00200000
#define NETMON_S_IFMT 00170000
#define NETMON_S_IFSOCK 0140000
#define NETMON_IPPROTO_MPTCP 262

/* struct sock_common: stable since long before 6.1 (see struct sock_head). */
#define SKC_NUM 14
#define SKC_FAMILY 16
#define SKC_V6_DADDR 56

/* struct mmsghdr on 64-bit: struct user_msghdr (56 bytes) then msg_len. */
#define MMSG_SIZE 64
#define MMSG_LEN_OFF 56

enum call_kind {
    CALL_NONE, CALL_SENDTO, CALL_SENDMSG, CALL_SENDMMSG,
    CALL_RECVFROM, CALL_RECVMSG, CALL_RECVMMSG,
    CALL_READ, CALL_WRITE, CALL_SPLICE,
};

/* What a thread's syscall entry left for its exit (or for socket events in
 * between), keyed by pid_tgid. */
struct call_ctx {
    __u64 ptr;       /* user msghdr / mmsghdr vector */
    __u64 addr;      /* user sockaddr (sendto/recvfrom) */
    __u64 sk;        /* socket of the call, when known */
    __u64 sk2;       /* second socket (splice/sendfile input side) */
    __u32 flags;
    __u8 kind;       /* enum call_kind */
    __u8 deferred;   /* socket mode: receive counted at syscall exit */
    __u8 seen;       /* socket mode: a receive event fired during the call */
    __u8 idx;        /* socket mode: next sendmmsg message */
};

BPF_TABLE("lru_hash", struct traffic_key, struct traffic_stats, traffic_map, NETMON_MAX_FLOWS);
BPF_TABLE("lru_hash", __u32, struct traffic_stats, pid_stats, NETMON_MAX_PROCESSES);
BPF_HASH(protocol_totals, __u32, __u64, 16);
BPF_TABLE("lru_hash", struct traffic_key, __u64, anomaly_map, NETMON_MAX_FLOWS);
BPF_HASH(listen_ports, struct port_key, __u32, NETMON_MAX_LISTEN_PORTS);
BPF_TABLE("lru_hash", __u64, struct call_ctx, calls, NETMON_MAX_CALLS);
BPF_ARRAY(counters, __u64, NETMON_COUNTER_MAX);

static __always_inline __u16 netmon_ntohs(__u16 v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_bswap16(v);
#else
    return v;
#endif
}

static __always_inline void count(int slot)
{
    __u32 key = slot;
    __u64 *value = counters.lookup(&key);
    if (value)
        __sync_fetch_and_add(value, 1);
}

static __always_inline void add_stats(struct traffic_stats *st, __u64 bytes, __u64 msgs,
                                      int sending, __u64 now)
{
    if (sending) {
        __sync_fetch_and_add(&st->bytes_sent, bytes);
        __sync_fetch_and_add(&st->packets_sent, msgs);
    } else {
        __sync_fetch_and_add(&st->bytes_recv, bytes);
        __sync_fetch_and_add(&st->packets_recv, msgs);
    }
    st->last_update_ns = now;
}

/* A new entry: what does not change per event is captured once, here. The
 * process name is kept current by task_rename below. */
static __always_inline void init_stats(struct traffic_stats *st)
{
    __u32 pf = 0;
    char *task = (char *)bpf_get_current_task();
    bpf_probe_read_kernel(&pf, sizeof(pf), task + OFF_TASK_FLAGS);
    st->flags = (pf & NETMON_PF_KTHREAD) ? NETMON_FLAG_KERNEL_THREAD : 0;
    bpf_get_current_comm(&st->comm, sizeof(st->comm));
}

static __always_inline void account(struct traffic_key *key, __u64 bytes, __u64 msgs, int sending)
{
    __u64 now = bpf_ktime_get_ns();

    struct traffic_stats *st = traffic_map.lookup(key);
    if (!st) {
        struct traffic_stats fresh = {};
        init_stats(&fresh);
        if (traffic_map.insert(key, &fresh) == 0)
            count(NETMON_COUNTER_FLOWS_CREATED);
        st = traffic_map.lookup(key);
    }
    if (st)
        add_stats(st, bytes, msgs, sending, now);
    else
        count(NETMON_COUNTER_FLOW_DROPS);

    __u32 pid = key->pid;
    struct traffic_stats *ps = pid_stats.lookup(&pid);
    if (!ps) {
        struct traffic_stats fresh = {};
        init_stats(&fresh);
        pid_stats.insert(&pid, &fresh);
        ps = pid_stats.lookup(&pid);
    }
    if (ps)
        add_stats(ps, bytes, msgs, sending, now);

    __u32 proto = key->protocol;
    __u64 *total = protocol_totals.lookup(&proto);
    if (total)
        __sync_fetch_and_add(total, bytes);
}

/* A process renamed itself (prctl, exec): keep its name current without
 * reading the name on every event. Threads naming themselves are not the
 * process. */
TRACEPOINT_PROBE(task, task_rename)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tgid = id >> 32;
    if (args->pid != (__u32)id || args->pid != tgid)
        return 0;
    struct traffic_stats *ps = pid_stats.lookup(&tgid);
    if (ps)
        bpf_probe_read_kernel(ps->comm, sizeof(ps->comm), args->newcomm);
    return 0;
}

/* Fill key->remote_ip and *rport_be from a user sockaddr; 0 if unusable. */
static __always_inline int read_user_sockaddr(struct traffic_key *key, __u16 *rport_be,
                                              __u64 uaddr)
{
    __u16 family = 0;
    if (!uaddr || bpf_probe_read_user(&family, sizeof(family), (void *)uaddr))
        return 0;
    if (family == NETMON_AF_INET && key->family == NETMON_FAMILY_IPV4) {
        bpf_probe_read_user(rport_be, 2, (void *)(uaddr + 2));
        bpf_probe_read_user(key->remote_ip, 4, (void *)(uaddr + 4));
        return 1;
    }
    if (family == NETMON_AF_INET6 && key->family == NETMON_FAMILY_IPV6) {
        bpf_probe_read_user(rport_be, 2, (void *)(uaddr + 2));
        bpf_probe_read_user(key->remote_ip, 16, (void *)(uaddr + 8));
        return 1;
    }
    return 0;
}

/* The sockaddr a user msghdr points to (msg_name is its first field). */
static __always_inline __u64 msghdr_name(__u64 msghdr)
{
    __u64 name = 0;
    if (msghdr)
        bpf_probe_read_user(&name, sizeof(name), (void *)msghdr);
    return name;
}

static __always_inline int classify(__u16 type, __u16 protocol)
{
    if (protocol == NETMON_IPPROTO_ICMP)
        return NETMON_PROTO_ICMP;
    if (protocol == NETMON_IPPROTO_ICMPV6)
        return NETMON_PROTO_ICMPV6;
    if (type == NETMON_SOCK_RAW)
        return NETMON_PROTO_RAW;
    if (protocol == NETMON_IPPROTO_TCP || protocol == NETMON_IPPROTO_MPTCP)
        return NETMON_PROTO_TCP;
    if (protocol == NETMON_IPPROTO_UDP || protocol == NETMON_IPPROTO_UDPLITE)
        return NETMON_PROTO_UDP;
    return 0;
}

/* Build the flow key for socket `sk` owned by the current process. `uaddr`
 * (a user sockaddr) names the peer when the socket is not connected.
 * Returns 0 when the socket is not network traffic we count. Sets
 * *connected when the socket itself knows its peer. */
/* The start of struct sock_common, read at once. */
struct sock_head {
    __u32 daddr;
    __u32 rcv_saddr;
    __u32 hash;
    __u16 dport;     /* network order */
    __u16 num;       /* local port, host order */
    __u16 family;
};

/* Build the flow key for socket `sk` owned by the current process. `uaddr`
 * (a user sockaddr) names the peer when the socket is not connected.
 * Returns 0 when the socket is not network traffic we count. Sets
 * *connected when the socket itself knows its peer. */
static __always_inline int build_key(struct traffic_key *key, __u64 sk, __u64 uaddr,
                                     int *connected)
{
    char *s = (char *)sk;
    struct sock_head head = {};
    __u16 type_protocol[2] = {};
    __u16 rport_be = 0;

    __builtin_memset(key, 0, sizeof(*key));
    *connected = 0;
    if (!sk)
        return 0;
    key->pid = bpf_get_current_pid_tgid() >> 32;
    bpf_probe_read_kernel(&head, sizeof(head), s);
    if (head.family == NETMON_AF_PACKET) {
        key->protocol = NETMON_PROTO_PACKET;
        key->family = NETMON_FAMILY_PACKET;
        *connected = 1;
        return 1;
    }
    if (head.family == NETMON_AF_INET) {
        key->family = NETMON_FAMILY_IPV4;
        *(__u32 *)key->remote_ip = head.daddr;
        *connected = head.daddr != 0;
    } else if (head.family == NETMON_AF_INET6) {
        key->family = NETMON_FAMILY_IPV6;
        bpf_probe_read_kernel(key->remote_ip, 16, s + SKC_V6_DADDR);
        __u32 *ip = (__u32 *)key->remote_ip;   /* 4-byte aligned in the key */
        *connected = (ip[0] | ip[1] | ip[2] | ip[3]) != 0;
    } else {
        return 0;   /* AF_UNIX, netlink, ... are not network traffic */
    }
    /* sk_type and sk_protocol are adjacent u16s (checked by user space). */
    bpf_probe_read_kernel(type_protocol, sizeof(type_protocol), s + OFF_SK_TYPE_PROTOCOL);
    __u16 type = type_protocol[OFF_SK_TYPE_INDEX];
    __u16 protocol = type_protocol[1 - OFF_SK_TYPE_INDEX];
    key->protocol = classify(type, protocol);
    if (!key->protocol)
        return 0;

    if (*connected)
        rport_be = head.dport;
    else
        read_user_sockaddr(key, &rport_be, uaddr);

    if (key->protocol != NETMON_PROTO_TCP && key->protocol != NETMON_PROTO_UDP)
        return 1;   /* no ports: role unknown, port 0 */

    __u16 lport = head.num;
    __u8 locks = 0;
    bpf_probe_read_kernel(&locks, sizeof(locks), s + OFF_SK_USERLOCKS);
    struct port_key pk = {.port = lport, .protocol = key->protocol};
    /* The server side: bound to a port by bind(), on a port outside the
     * ephemeral range (clients get ephemeral ports), or on a listening port
     * (accepted sockets share their listener's port). */
    if ((locks & NETMON_SOCK_BINDPORT_LOCK) || lport < NETMON_EPHEMERAL_LOW ||
        lport > NETMON_EPHEMERAL_HIGH || listen_ports.lookup(&pk)) {
        key->role = NETMON_ROLE_SERVER;
        key->port = lport;
    } else {
        key->role = NETMON_ROLE_CLIENT;
        key->port = netmon_ntohs(rport_be);
    }
    return 1;
}

static __always_inline void account_sk(__u64 sk, __u64 uaddr, __u64 bytes, int sending)
{
    struct traffic_key key;
    int connected;
    if (build_key(&key, sk, uaddr, &connected))
        account(&key, bytes, 1, sending);
}

/* Walk current->files to the socket behind `fd`; 0 if it is not a socket. */
static __always_inline __u64 sk_from_fd(int fd)
{
    char *task = (char *)bpf_get_current_task();
    char *files = 0, *fdt = 0, *fd_array = 0, *file = 0, *inode = 0, *sock = 0;
    __u32 max_fds = 0;
    __u16 mode = 0;
    __u64 sk = 0;

    if (fd < 0)
        return 0;
    bpf_probe_read_kernel(&files, sizeof(files), task + OFF_TASK_FILES);
    if (!files)
        return 0;
    bpf_probe_read_kernel(&fdt, sizeof(fdt), files + OFF_FILES_FDT);
    if (!fdt)
        return 0;
    bpf_probe_read_kernel(&max_fds, sizeof(max_fds), fdt + OFF_FDT_MAX_FDS);
    if ((__u32)fd >= max_fds)
        return 0;
    bpf_probe_read_kernel(&fd_array, sizeof(fd_array), fdt + OFF_FDT_FD);
    if (!fd_array)
        return 0;
    bpf_probe_read_kernel(&file, sizeof(file), fd_array + (__u64)fd * sizeof(void *));
    if (!file)
        return 0;
    bpf_probe_read_kernel(&inode, sizeof(inode), file + OFF_FILE_INODE);
    if (!inode)
        return 0;
    bpf_probe_read_kernel(&mode, sizeof(mode), inode + OFF_INODE_MODE);
    if ((mode & NETMON_S_IFMT) != NETMON_S_IFSOCK)
        return 0;
    bpf_probe_read_kernel(&sock, sizeof(sock), file + OFF_FILE_PRIVATE_DATA);
    if (!sock)
        return 0;
    bpf_probe_read_kernel(&sk, sizeof(sk), sock + OFF_SOCKET_SK);
    return sk;
}

/* A network socket (not AF_UNIX etc.) behind fd, else 0. */
static __always_inline __u64 net_sk_from_fd(int fd)
{
    __u64 sk = sk_from_fd(fd);
    __u16 family = 0;
    if (!sk)
        return 0;
    bpf_probe_read_kernel(&family, sizeof(family), (char *)sk + SKC_FAMILY);
    if (family != NETMON_AF_INET && family != NETMON_AF_INET6 && family != NETMON_AF_PACKET)
        return 0;
    return sk;
}

static __always_inline void stash(struct call_ctx *c)
{
    __u64 id = bpf_get_current_pid_tgid();
    calls.update(&id, c);
}

static __always_inline __u32 mmsg_len(__u64 vec, int i)
{
    __u32 len = 0;
    bpf_probe_read_user(&len, sizeof(len), (void *)(vec + (__u64)i * MMSG_SIZE + MMSG_LEN_OFF));
    return len;
}

/* Count each message of a sendmmsg/recvmmsg vector that moved `n` messages.
 * On an unconnected socket each message names its own peer; the verifier
 * bounds how many of those we can follow, so messages past the first
 * NETMON_MAX_MMSG_PEERS are added to the last peer read. */
static __always_inline void account_mmsg(__u64 sk, __u64 vec, long n, int sending)
{
    struct traffic_key key;
    int connected, i;
    __u64 bytes = 0, msgs = 0;
    if (!build_key(&key, sk, 0, &connected))
        return;
    /* Real loops: unrolled they would copy account() many times. */
#pragma clang loop unroll(disable)
    for (i = 0; i < NETMON_MAX_MMSG; i++) {
        if (i >= n)
            break;
        bytes += mmsg_len(vec, i);
        msgs++;
    }
    if (!connected) {
#pragma clang loop unroll(disable)
        for (i = 0; i < NETMON_MAX_MMSG_PEERS; i++) {
            if (msgs <= 1)
                break;
            __u32 len = mmsg_len(vec, i);
            build_key(&key, sk, msghdr_name(vec + (__u64)i * MMSG_SIZE), &connected);
            account(&key, len, 1, sending);
            bytes -= len;
            msgs--;
        }
        build_key(&key, sk, msghdr_name(vec + (__u64)i * MMSG_SIZE), &connected);
    }
    if (msgs)
        account(&key, bytes, msgs, sending);
}

/* The peer of a receive: recvfrom's addr, or recvmsg's msg_name. */
static __always_inline __u64 recv_addr(struct call_ctx *c)
{
    return c->kind == CALL_RECVFROM ? c->addr : msghdr_name(c->ptr);
}

/* The input side of splice/sendfile is a socket: count what it read, unless
 * the socket layer already did (tcp_splice_read bypasses sock_recvmsg). */
static __always_inline void exit_splice(long ret)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct call_ctx *c = calls.lookup(&id);
    if (!c)
        return;
    if (ret > 0) {
#ifdef NETMON_MODE_SOCKET
        if (c->sk2 && !c->seen)
            account_sk(c->sk2, 0, ret, 0);
#else
        if (c->sk)
            account_sk(c->sk, 0, ret, 1);
        else if (c->sk2)
            account_sk(c->sk2, 0, ret, 0);
#endif
    }
    calls.delete(&id);
}

static __always_inline void enter_splice(int fd_out, int fd_in)
{
    struct call_ctx c = {.kind = CALL_SPLICE};
#ifndef NETMON_MODE_SOCKET
    c.sk = net_sk_from_fd(fd_out);
#endif
    c.sk2 = net_sk_from_fd(fd_in);
    if (c.sk || c.sk2)
        stash(&c);
}

TRACEPOINT_PROBE(syscalls, sys_enter_splice)
{
    enter_splice(args->fd_out, args->fd_in);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_splice)
{
    exit_splice(args->ret);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_sendfile64)
{
    enter_splice(args->out_fd, args->in_fd);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_sendfile64)
{
    exit_splice(args->ret);
    return 0;
}

/* Listening TCP ports make their accepted sockets the server side, even for
 * listeners on ephemeral ports; counted, since SO_REUSEPORT allows several. */
#ifdef NETMON_HAVE_SET_STATE
#define NETMON_TCP_CLOSE 7
#define NETMON_TCP_LISTEN 10
TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != NETMON_IPPROTO_TCP || args->sport == 0)
        return 0;
    struct port_key pk = {.port = args->sport, .protocol = NETMON_PROTO_TCP};
    if (args->newstate == NETMON_TCP_LISTEN) {
        __u32 one = 1;
        __u32 *listeners = listen_ports.lookup(&pk);
        if (listeners)
            __sync_fetch_and_add(listeners, 1);
        else
            listen_ports.update(&pk, &one);
    } else if (args->oldstate == NETMON_TCP_LISTEN && args->newstate == NETMON_TCP_CLOSE) {
        /* (A new connection's socket is cloned from its listener and leaves
         * LISTEN for SYN_RECV: not a listener going away.) */
        __u32 *listeners = listen_ports.lookup(&pk);
        if (listeners && *listeners > 1)
            __sync_fetch_and_add(listeners, -1);
        else if (listeners)
            listen_ports.delete(&pk);
    }
    return 0;
}
#else
/* Older kernels: learn listening ports from listen(); they are never removed. */
TRACEPOINT_PROBE(syscalls, sys_enter_listen)
{
    __u64 sk = net_sk_from_fd(args->fd);
    __u16 lport = 0;
    __u32 one = 1;
    if (!sk)
        return 0;
    bpf_probe_read_kernel(&lport, sizeof(lport), (char *)sk + SKC_NUM);
    if (lport) {
        struct port_key pk = {.port = lport, .protocol = NETMON_PROTO_TCP};
        listen_ports.update(&pk, &one);
    }
    return 0;
}
#endif

#ifdef NETMON_MODE_SOCKET

/* The peer of the send in progress on an unconnected socket, from the
 * syscall's arguments. */
static __always_inline __u64 pending_send_addr(void)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct call_ctx *c = calls.lookup(&id);
    if (!c)
        return 0;
    if (c->kind == CALL_SENDTO)
        return c->addr;
    if (c->kind == CALL_SENDMSG)
        return msghdr_name(c->ptr);
    if (c->kind == CALL_SENDMMSG) {
        __u64 entry = c->ptr + (__u64)c->idx * MMSG_SIZE;
        c->idx++;
        return msghdr_name(entry);
    }
    return 0;
}

TRACEPOINT_PROBE(sock, sock_send_length)
{
    struct traffic_key key;
    int connected;
    __u64 sk = (__u64)args->sk;
    if (args->ret <= 0)
        return 0;
    if (!build_key(&key, sk, 0, &connected))
        return 0;
    if (!connected)
        build_key(&key, sk, pending_send_addr(), &connected);
    account(&key, args->ret, 1, 1);
    return 0;
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
    struct traffic_key key;
    int connected;
    __u64 sk = (__u64)args->sk;
    if (args->ret <= 0 || (args->flags & NETMON_MSG_PEEK))
        return 0;
    if (!build_key(&key, sk, 0, &connected))
        return 0;
    __u64 id = bpf_get_current_pid_tgid();
    struct call_ctx *c = calls.lookup(&id);
    if (c) {
        c->seen = 1;
        /* Unconnected: the peer address reaches user memory only when the
         * syscall returns, so count there. */
        if (!connected && c->kind >= CALL_RECVFROM && c->kind <= CALL_RECVMMSG) {
            c->sk = sk;
            c->deferred = 1;
            return 0;
        }
    }
    account(&key, args->ret, 1, 0);
    return 0;
}

/* Sends: only the peer address of unconnected sockets is needed, so there is
 * no exit handler; a stale entry is only consulted for an unconnected send
 * and is overwritten by the thread's next send call. */
TRACEPOINT_PROBE(syscalls, sys_enter_sendto)
{
    if (args->addr) {
        struct call_ctx c = {.kind = CALL_SENDTO, .addr = (__u64)args->addr};
        stash(&c);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg)
{
    if (msghdr_name((__u64)args->msg)) {
        struct call_ctx c = {.kind = CALL_SENDMSG, .ptr = (__u64)args->msg};
        stash(&c);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_sendmmsg)
{
    struct call_ctx c = {.kind = CALL_SENDMMSG, .ptr = (__u64)args->mmsg};
    stash(&c);
    return 0;
}

/* `kind` is a constant at each call site, so each exit program carries only
 * its own accounting code. */
static __always_inline void exit_recv(long ret, int kind)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct call_ctx *c = calls.lookup(&id);
    if (!c)
        return;
    if (c->kind == kind && c->deferred && ret > 0) {
        if (kind == CALL_RECVMMSG)
            account_mmsg(c->sk, c->ptr, ret, 0);
        else
            account_sk(c->sk, recv_addr(c), ret, 0);
    }
    calls.delete(&id);
}

/* Receives: remembered only when the caller asked for the peer's address
 * (recv() on a connected socket needs nothing from its syscall). */
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom)
{
    if (args->addr) {
        struct call_ctx c = {.kind = CALL_RECVFROM, .addr = (__u64)args->addr};
        stash(&c);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom)
{
    exit_recv(args->ret, CALL_RECVFROM);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg)
{
    if (msghdr_name((__u64)args->msg)) {
        struct call_ctx c = {.kind = CALL_RECVMSG, .ptr = (__u64)args->msg};
        stash(&c);
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg)
{
    exit_recv(args->ret, CALL_RECVMSG);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_recvmmsg)
{
    struct call_ctx c = {.kind = CALL_RECVMMSG, .ptr = (__u64)args->mmsg};
    stash(&c);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_recvmmsg)
{
    exit_recv(args->ret, CALL_RECVMMSG);
    return 0;
}

#else /* NETMON_MODE_SYSCALLS */

/* Entry: remember the call only when its fd is a network socket. */
static __always_inline void enter_call(int fd, int kind, __u64 ptr, __u64 addr, __u32 flags)
{
    __u64 sk = net_sk_from_fd(fd);
    if (!sk)
        return;
    struct call_ctx c = {.kind = kind, .ptr = ptr, .addr = addr, .flags = flags, .sk = sk};
    stash(&c);
}

/* Exit: count what the call moved. `kind` is a constant at each call site,
 * so the switch folds away and each exit program carries only its own case. */
static __always_inline void exit_call(long ret, int kind)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct call_ctx *c = calls.lookup(&id);
    if (!c)
        return;
    if (c->kind == kind && ret > 0 && !(c->flags & NETMON_MSG_PEEK)) {
        switch (kind) {
        case CALL_SENDTO:
            account_sk(c->sk, c->addr, ret, 1);
            break;
        case CALL_SENDMSG:
            account_sk(c->sk, msghdr_name(c->ptr), ret, 1);
            break;
        case CALL_SENDMMSG:
            account_mmsg(c->sk, c->ptr, ret, 1);
            break;
        case CALL_RECVFROM:
        case CALL_RECVMSG:
            account_sk(c->sk, recv_addr(c), ret, 0);
            break;
        case CALL_RECVMMSG:
            account_mmsg(c->sk, c->ptr, ret, 0);
            break;
        case CALL_WRITE:
            account_sk(c->sk, 0, ret, 1);
            break;
        case CALL_READ:
            account_sk(c->sk, 0, ret, 0);
            break;
        }
    }
    calls.delete(&id);
}

#define SYSCALL_PAIR(name, kind, ptr, addr, flags)                  \
    TRACEPOINT_PROBE(syscalls, sys_enter_##name)                    \
    {                                                               \
        enter_call(args->fd, kind, ptr, addr, flags);               \
        return 0;                                                   \
    }                                                               \
    TRACEPOINT_PROBE(syscalls, sys_exit_##name)                     \
    {                                                               \
        exit_call(args->ret, kind);                                 \
        return 0;                                                   \
    }

SYSCALL_PAIR(sendto, CALL_SENDTO, 0, (__u64)args->addr, args->flags)
SYSCALL_PAIR(sendmsg, CALL_SENDMSG, (__u64)args->msg, 0, args->flags)
SYSCALL_PAIR(sendmmsg, CALL_SENDMMSG, (__u64)args->mmsg, 0, args->flags)
SYSCALL_PAIR(recvfrom, CALL_RECVFROM, 0, (__u64)args->addr, args->flags)
SYSCALL_PAIR(recvmsg, CALL_RECVMSG, (__u64)args->msg, 0, args->flags)
SYSCALL_PAIR(recvmmsg, CALL_RECVMMSG, (__u64)args->mmsg, 0, args->flags)
SYSCALL_PAIR(read, CALL_READ, 0, 0, 0)
SYSCALL_PAIR(readv, CALL_READ, 0, 0, 0)
SYSCALL_PAIR(write, CALL_WRITE, 0, 0, 0)
SYSCALL_PAIR(writev, CALL_WRITE, 0, 0, 0)

#endif
