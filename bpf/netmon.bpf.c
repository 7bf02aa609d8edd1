/* netmon: per-process, per-flow network accounting.
 *
 * Two probe modes, chosen by user space with -D:
 *   NETMON_MODE_SOCKET   sock:sock_send_length / sock:sock_recv_length count
 *                        every socket-layer send and receive (any syscall,
 *                        sendfile, splice to a socket, io_uring). The peer of
 *                        a send on an unconnected socket is read from the
 *                        syscall's own arguments (the task's saved user
 *                        registers); the source of a UDP receive from a cgroup
 *                        sock_addr program, which runs only on receives that
 *                        ask for it. Syscall tracepoints add what the socket
 *                        layer cannot see: splice/sendfile out of TCP sockets
 *                        (always attached) and the sources of receives on
 *                        unconnected raw and ICMP sockets (the raw_* programs,
 *                        attached by user space only while such sockets exist:
 *                        any syscall tracepoint puts every syscall of every
 *                        process on a slower path).
 *   NETMON_MODE_SYSCALLS sys_enter_* / sys_exit_* only, for kernels without
 *                        those tracepoints.
 * Counting uses what moved (return values), never the requested length.
 *
 * A socket's flow identity (protocol, family, side, port, peer) is worked out
 * once, when the socket is first seen by a process, and remembered in
 * sock_idents; each event then costs one lookup there. The remembered
 * identity also keeps a socket's bytes on its flow when the kernel changes
 * the socket under it (the local port is released at TCP_CLOSE while the
 * reader still drains its receive queue).
 *
 * Offsets of fields that differ between kernel versions (OFF_*) come from the
 * running kernel's BTF, passed in by user space.
 */
#include "netmon.h"

struct task_struct;   /* opaque: only passed to bpf_task_pt_regs() */

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
    __u8 pad;
    __u8 idx;        /* socket mode: next sendmmsg message */
};

/* The start of struct sock_common, read at once. */
struct sock_head {
    __u32 daddr;
    __u32 rcv_saddr;
    __u32 hash;
    __u16 dport;     /* network order */
    __u16 num;       /* local port, host order */
    __u16 family;
    __u16 pad;
};

/* A socket's flow identity as one process sees it (value of sock_idents,
 * keyed by the socket's address). For a connected socket `key` is complete;
 * otherwise the peer (and a client's port) comes from each call. */
struct sock_ident {
    struct sock_head head;   /* what the socket looked like when resolved */
    struct traffic_key key;
    __u8 connected;
    __u8 pad[3];
};

/* The peer of the UDP call in progress on a thread, from the cgroup
 * sock_addr programs (value of udp_peers, keyed by pid_tgid). */
struct udp_peer {
    __u64 sk;
    __u8 ip[16];     /* IPv4: the first 4 bytes, the rest zero */
    __u16 port_be;
    __u16 pad[3];
};

BPF_TABLE("lru_percpu_hash", struct traffic_key, struct traffic_stats, traffic_map,
          NETMON_MAX_FLOWS);
BPF_TABLE("lru_percpu_hash", __u32, struct traffic_stats, pid_stats, NETMON_MAX_PROCESSES);
BPF_PERCPU_ARRAY(protocol_totals, __u64, NETMON_PROTO_SLOTS);
BPF_TABLE("lru_hash", struct traffic_key, __u64, anomaly_map, NETMON_MAX_FLOWS);
BPF_HASH(listen_ports, struct port_key, __u32, NETMON_MAX_LISTEN_PORTS);
BPF_TABLE("lru_hash", __u64, struct sock_ident, sock_idents, NETMON_MAX_SOCKETS);
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

/* This CPU's copy of the entry: plain adds. (No clock read either: on the
 * hot path it cost as much as the rest of the update.) */
static __always_inline void add_stats(struct traffic_stats *st, __u64 bytes, __u64 msgs,
                                      int sending)
{
    if (sending) {
        st->bytes_sent += bytes;
        st->packets_sent += msgs;
    } else {
        st->bytes_recv += bytes;
        st->packets_recv += msgs;
    }
}

/* A new entry: what does not change per event is captured once, here. The
 * process name and cgroup are kept current by task_rename below. */
static __always_inline void init_stats(struct traffic_stats *st)
{
    __u32 pf = 0;
    char *task = (char *)bpf_get_current_task();
    bpf_probe_read_kernel(&pf, sizeof(pf), task + OFF_TASK_FLAGS);
    st->flags = (pf & NETMON_PF_KTHREAD) ? NETMON_FLAG_KERNEL_THREAD : 0;
    bpf_get_current_comm(&st->comm, sizeof(st->comm));
    st->cgroup_id = bpf_get_current_cgroup_id();
    st->named_ns = bpf_ktime_get_ns();
}

static __always_inline void account(struct traffic_key *key, __u64 bytes, __u64 msgs, int sending)
{
    struct traffic_stats *st = traffic_map.lookup(key);
    if (!st) {
        struct traffic_stats fresh = {};
        init_stats(&fresh);
        if (traffic_map.insert(key, &fresh) == 0)
            count(NETMON_COUNTER_FLOWS_CREATED);
        st = traffic_map.lookup(key);
    }
    if (st)
        add_stats(st, bytes, msgs, sending);
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
        add_stats(ps, bytes, msgs, sending);

    __u32 proto = key->protocol;
    __u64 *total = protocol_totals.lookup(&proto);
    if (total)
        *total += bytes;   /* per-CPU: no atomic needed */
}

/* A process renamed itself (prctl, exec): keep its name current without
 * reading the name on every event. Threads naming themselves are not the
 * process. The cgroup is read again too, into the same copy: a process
 * moved into a service's or container's cgroup and then exec'd shows its
 * new home. */
TRACEPOINT_PROBE(task, task_rename)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tgid = id >> 32;
    if (args->pid != (__u32)id || args->pid != tgid)
        return 0;
    struct traffic_stats *ps = pid_stats.lookup(&tgid);   /* this CPU's copy */
    if (ps) {
        bpf_probe_read_kernel(ps->comm, sizeof(ps->comm), args->newcomm);
        ps->cgroup_id = bpf_get_current_cgroup_id();
        ps->named_ns = bpf_ktime_get_ns();
    }
    return 0;
}

/* A process that moved traffic exited: user space reads its final counts
 * and then removes its entries, so that dead processes are not read on every
 * poll until the LRU maps happen to evict them. Threads exiting are not the
 * process exiting. */
BPF_TABLE("lru_hash", __u32, __u8, exited_pids, NETMON_MAX_PROCESSES);

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tgid = id >> 32;
    __u8 one = 1;
    if ((__u32)id != tgid || !pid_stats.lookup(&tgid))
        return 0;
    exited_pids.update(&tgid, &one);
    return 0;
}

/* ---------------------------------------------------------------- identity */

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

static __always_inline int ip_is_zero(__u8 *ip)
{
    __u32 *w = (__u32 *)ip;   /* 4-byte aligned in the structs that hold it */
    return (w[0] | w[1] | w[2] | w[3]) == 0;
}

/* Work out the identity of socket `sk` for the current process from the
 * socket itself. Returns 0 when it is not network traffic we count. */
static __always_inline int resolve_ident(struct sock_ident *id, char *sk, struct sock_head *head,
                                         __u32 tgid)
{
    struct traffic_key *key = &id->key;
    __u16 type_protocol[2] = {};

    __builtin_memset(id, 0, sizeof(*id));
    id->head = *head;
    key->pid = tgid;
    if (head->family == NETMON_AF_PACKET) {
        key->protocol = NETMON_PROTO_PACKET;
        key->family = NETMON_FAMILY_PACKET;
        id->connected = 1;
        return 1;
    }
    if (head->family == NETMON_AF_INET) {
        key->family = NETMON_FAMILY_IPV4;
        *(__u32 *)key->remote_ip = head->daddr;
    } else if (head->family == NETMON_AF_INET6) {
        key->family = NETMON_FAMILY_IPV6;
        bpf_probe_read_kernel(key->remote_ip, 16, sk + SKC_V6_DADDR);
    } else {
        return 0;   /* AF_UNIX, netlink, ... are not network traffic */
    }
    id->connected = !ip_is_zero(key->remote_ip);
    /* sk_type and sk_protocol are adjacent u16s (checked by user space). */
    bpf_probe_read_kernel(type_protocol, sizeof(type_protocol), sk + OFF_SK_TYPE_PROTOCOL);
    key->protocol = classify(type_protocol[OFF_SK_TYPE_INDEX],
                             type_protocol[1 - OFF_SK_TYPE_INDEX]);
    if (!key->protocol)
        return 0;
    if (key->protocol != NETMON_PROTO_TCP && key->protocol != NETMON_PROTO_UDP)
        return 1;   /* no ports: role unknown, port 0 */

    __u16 lport = head->num;
    __u8 locks = 0;
    bpf_probe_read_kernel(&locks, sizeof(locks), sk + OFF_SK_USERLOCKS);
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
        if (id->connected)
            key->port = netmon_ntohs(head->dport);
    }
    return 1;
}

/* Is the remembered identity still this socket's? A different peer or local
 * port means the socket was reconnected, or freed and its memory reused. */
static __always_inline int same_socket(struct sock_ident *id, struct sock_head *head, char *sk)
{
    struct sock_head *was = &id->head;
    if (head->family != was->family || head->daddr != was->daddr ||
        head->rcv_saddr != was->rcv_saddr || head->dport != was->dport ||
        head->num != was->num)
        return 0;
    if (head->family == NETMON_AF_INET6) {
        __u8 daddr[16] = {};
        bpf_probe_read_kernel(daddr, 16, sk + SKC_V6_DADDR);
        __u32 *now = (__u32 *)daddr, *then = (__u32 *)id->key.remote_ip;
        if (!id->connected)
            return ip_is_zero(daddr);
        return now[0] == then[0] && now[1] == then[1] && now[2] == then[2] && now[3] == then[3];
    }
    return 1;
}

/* The start of the socket, as identities are compared. Nonzero: unreadable. */
static __always_inline int read_head(struct sock_head *head, __u64 sk)
{
    if (!sk || bpf_probe_read_kernel(head, sizeof(*head), (void *)sk))
        return -1;
    if (head->num == 0) {
        /* At TCP_CLOSE the kernel releases the local port (skc_num = 0) while
         * the owner may still drain the receive queue; inet_sport keeps it. */
        __u16 sport_be = 0;
        bpf_probe_read_kernel(&sport_be, sizeof(sport_be), (char *)sk + OFF_INET_SPORT);
        head->num = netmon_ntohs(sport_be);
    }
    return 0;
}

/* The identity of `sk` (whose start is *head) for process `tgid`:
 * remembered, or worked out now into *scratch and remembered. NULL when the
 * socket does not count. */
static __always_inline struct sock_ident *ident_of(__u64 sk, struct sock_head *head, __u32 tgid,
                                                   struct sock_ident *scratch)
{
    struct sock_ident *id = sock_idents.lookup(&sk);
    if (id && id->key.pid == tgid && same_socket(id, head, (char *)sk))
        return id;
    if (!resolve_ident(scratch, (char *)sk, head, tgid))
        return 0;
    sock_idents.update(&sk, scratch);
    return scratch;
}

static __always_inline struct sock_ident *socket_ident(__u64 sk, struct sock_ident *scratch)
{
    struct sock_head head;
    if (read_head(&head, sk))
        return 0;
    return ident_of(sk, &head, bpf_get_current_pid_tgid() >> 32, scratch);
}

/* The flow of one call: the socket's identity plus, for an unconnected
 * socket, the peer of this call (network-order port). */
static __always_inline void flow_with_peer(struct traffic_key *key, struct sock_ident *id,
                                           __u8 *ip, __u16 port_be)
{
    *key = id->key;
    if (id->connected)
        return;
    if (ip)
        __builtin_memcpy(key->remote_ip, ip, 16);
    if (key->role == NETMON_ROLE_CLIENT)
        key->port = netmon_ntohs(port_be);
}

/* Peer from a user sockaddr, when its family matches the socket's: one read
 * of its first 16 bytes (all of a sockaddr_in), a second for the rest of a
 * sockaddr_in6's address. */
static __always_inline int read_user_peer(__u8 *ip, __u16 *port_be, __u64 uaddr, __u8 family)
{
    struct {
        __u16 family;
        __u16 port_be;
        __u32 word;      /* sin_addr, or sin6_flowinfo */
        __u8 rest[8];    /* sin_zero, or the first 8 bytes of sin6_addr */
    } sa;
    if (!uaddr || bpf_probe_read_user(&sa, sizeof(sa), (void *)uaddr))
        return 0;
    if (sa.family == NETMON_AF_INET && family == NETMON_FAMILY_IPV4) {
        *port_be = sa.port_be;
        *(__u32 *)ip = sa.word;
        return 1;
    }
    if (sa.family == NETMON_AF_INET6 && family == NETMON_FAMILY_IPV6) {
        *port_be = sa.port_be;
        __builtin_memcpy(ip, sa.rest, 8);
        bpf_probe_read_user(ip + 8, 8, (void *)(uaddr + 16));
        return 1;
    }
    return 0;
}

/* The flow of a call on an identified socket whose peer, if it needs one,
 * is the user sockaddr at `uaddr` (0: none given). */
static __always_inline void user_peer_flow(struct traffic_key *key, struct sock_ident *id,
                                           __u64 uaddr)
{
    __u8 ip[16] = {};
    __u16 port_be = 0;
    if (!id->connected)
        read_user_peer(ip, &port_be, uaddr, id->key.family);
    flow_with_peer(key, id, ip, port_be);
}

/* Count such a call. */
static __always_inline void account_user_peer(struct sock_ident *id, __u64 uaddr, __u64 bytes,
                                              __u64 msgs, int sending)
{
    struct traffic_key key;
    user_peer_flow(&key, id, uaddr);
    account(&key, bytes, msgs, sending);
}

static __always_inline void account_sk(__u64 sk, __u64 uaddr, __u64 bytes, int sending)
{
    struct sock_ident scratch;
    struct sock_ident *id = socket_ident(sk, &scratch);
    if (id)
        account_user_peer(id, uaddr, bytes, 1, sending);
}

/* The sockaddr a user msghdr points to (msg_name is its first field). */
static __always_inline __u64 msghdr_name(__u64 msghdr)
{
    __u64 name = 0;
    if (msghdr)
        bpf_probe_read_user(&name, sizeof(name), (void *)msghdr);
    return name;
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
    struct sock_ident scratch;
    struct sock_ident *found = socket_ident(sk, &scratch);
    __u64 bytes = 0, msgs = 0;
    int i;
    if (!found)
        return;
    /* A copy the verifier knows nothing about: with the constants of each
     * way resolve_ident() can go, it would follow every one of them through
     * the loops below separately, past its instruction limit. */
    struct sock_ident local;
    bpf_probe_read_kernel(&local, sizeof(local), found);
    struct sock_ident *id = &local;
    /* Real loops: unrolled they would copy account() many times. */
#pragma clang loop unroll(disable)
    for (i = 0; i < NETMON_MAX_MMSG; i++) {
        if (i >= n)
            break;
        bytes += mmsg_len(vec, i);
        msgs++;
    }
    if (!id->connected) {
#pragma clang loop unroll(disable)
        for (i = 0; i < NETMON_MAX_MMSG_PEERS; i++) {
            if (msgs <= 1)
                break;
            __u32 len = mmsg_len(vec, i);
            account_user_peer(id, msghdr_name(vec + (__u64)i * MMSG_SIZE), len, 1, sending);
            bytes -= len;
            msgs--;
        }
        if (msgs)
            account_user_peer(id, msghdr_name(vec + (__u64)i * MMSG_SIZE), bytes, msgs, sending);
        return;
    }
    if (msgs)
        account_user_peer(id, 0, bytes, msgs, sending);
}

/* The peer of a receive: recvfrom's addr, or recvmsg's msg_name. */
static __always_inline __u64 recv_addr(struct call_ctx *c)
{
    return c->kind == CALL_RECVFROM ? c->addr : msghdr_name(c->ptr);
}

/* Whether the socket is TCP (its protocol field, read directly). */
static __always_inline int is_tcp(__u64 sk)
{
    __u16 type_protocol[2] = {};
    bpf_probe_read_kernel(type_protocol, sizeof(type_protocol),
                          (char *)sk + OFF_SK_TYPE_PROTOCOL);
    __u16 protocol = type_protocol[1 - OFF_SK_TYPE_INDEX];
    return protocol == NETMON_IPPROTO_TCP || protocol == NETMON_IPPROTO_MPTCP;
}

/* The input side of splice/sendfile is a socket: count what it read. In
 * socket mode only TCP input needs it (tcp_splice_read bypasses
 * sock_recvmsg; other sockets' splice reads go through it and are counted
 * by sock_recv_length). */
static __always_inline void exit_splice(long ret)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct call_ctx *c = calls.lookup(&id);
    if (!c)
        return;
    if (ret > 0) {
#ifdef NETMON_MODE_SOCKET
        if (c->sk2)
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
#ifdef NETMON_MODE_SOCKET
    c.sk2 = net_sk_from_fd(fd_in);
    if (c.sk2 && !is_tcp(c.sk2))
        c.sk2 = 0;
#else
    c.sk = net_sk_from_fd(fd_out);
    c.sk2 = net_sk_from_fd(fd_in);
#endif
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

BPF_TABLE("lru_hash", __u64, struct udp_peer, udp_peers, NETMON_MAX_CALLS);

/* ------------------------------------------- UDP peers (cgroup sock_addr) */

/* The kernel runs these on UDP receives that ask for the source, just
 * before the socket-layer tracepoint of the same call: remember the peer for
 * that tracepoint. They never change the call (return 1: allow). (The same
 * hooks exist for sends, but cost every unconnected send a socket lock; the
 * syscall's arguments give a send's destination for less.) */
static __always_inline void remember_udp_peer(struct bpf_sock_addr *ctx, int v6)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct udp_peer fresh = {};
    struct udp_peer *p = udp_peers.lookup(&id);
    if (!p)
        p = &fresh;
    p->sk = (__u64)ctx->sk;
    p->port_be = (__u16)ctx->user_port;
    __u32 *ip = (__u32 *)p->ip;
    if (v6) {
        ip[0] = ctx->user_ip6[0];
        ip[1] = ctx->user_ip6[1];
        ip[2] = ctx->user_ip6[2];
        ip[3] = ctx->user_ip6[3];
    } else {
        ip[0] = ctx->user_ip4;
        ip[1] = ip[2] = ip[3] = 0;
    }
    if (p == &fresh)
        udp_peers.update(&id, &fresh);
}

/* One program per attach point: the kernel ties a program to one. */
int udp4_recvmsg_peer(struct bpf_sock_addr *ctx)
{
    remember_udp_peer(ctx, 0);
    return 1;
}

int udp6_recvmsg_peer(struct bpf_sock_addr *ctx)
{
    remember_udp_peer(ctx, 1);
    return 1;
}

/* --------------------------------------------------- socket-layer counting */

/* The user sockaddr a send names, from the arguments of the syscall in
 * progress (the user registers saved at syscall entry): sendto's dest_addr,
 * sendmsg's msg_name, or for sendmmsg the msg_name of the message being sent
 * (the socket layer sees the messages one by one, in order; the thread's
 * position in the vector is kept in `calls`). 0: none, or not a send call
 * (io_uring). */
static __always_inline __u64 send_addr_from_regs(void)
{
    /* A typed (BTF) pointer: its fields are plain loads, no helper calls. */
    struct task_struct *task = bpf_get_current_task_btf();
    char *regs = (char *)bpf_task_pt_regs(task);
    __u64 nr = *(__u64 *)(regs + NETMON_REGS_NR);
    if (nr == NETMON_NR_SENDTO)
        return *(__u64 *)(regs + NETMON_REGS_ARG4);
    if (nr != NETMON_NR_SENDMSG && nr != NETMON_NR_SENDMMSG)
        return 0;
    __u64 arg = *(__u64 *)(regs + NETMON_REGS_ARG1);
    if (nr == NETMON_NR_SENDMSG)
        return msghdr_name(arg);
    __u64 vlen = *(__u64 *)(regs + NETMON_REGS_ARG2), tid = bpf_get_current_pid_tgid();
    struct call_ctx *c = calls.lookup(&tid);
    __u32 idx = 0;
    /* The next message of the same vector, until the vector is done (a call
     * that stopped early makes the next call on the same vector start at
     * the wrong message: see README, Known limits). */
    if (c && c->kind == CALL_SENDMMSG && c->ptr == arg && c->idx + 1 < (__u32)vlen)
        idx = c->idx + 1;
    struct call_ctx fresh = {.kind = CALL_SENDMMSG, .ptr = arg, .idx = idx};
    calls.update(&tid, &fresh);
    return msghdr_name(arg + (__u64)idx * MMSG_SIZE);
}

/* The flow of a socket-layer event on an identified socket. Connected: the
 * socket's own. Unconnected sends: the peer from the syscall's arguments.
 * UDP receives: from the cgroup program of this call, if it ran. Raw and
 * ICMP receives: a receive's source reaches user memory only when the
 * syscall returns, so it is counted there (raw_* programs below): returns 0. */
static __always_inline int event_flow(struct traffic_key *key, struct sock_ident *id, __u64 sk,
                                      int sending)
{
    if (id->connected) {
        *key = id->key;
        return 1;
    }
    if (sending) {
        user_peer_flow(key, id, send_addr_from_regs());
        return 1;
    }
    __u64 tid = bpf_get_current_pid_tgid();
    if (id->key.protocol == NETMON_PROTO_UDP) {
        struct udp_peer *p = udp_peers.lookup(&tid);
        if (p && p->sk == sk) {
            /* (An IPv6 socket's receives, IPv4-mapped ones included, go
             * through the IPv6 hook: the address is in the socket's family.) */
            flow_with_peer(key, id, p->ip, p->port_be);
            p->sk = 0;   /* used: a later call without a peer must not reuse it */
        } else {
            flow_with_peer(key, id, 0, 0);
        }
        return 1;
    }
    struct call_ctx *c = calls.lookup(&tid);
    if (c && c->kind >= CALL_RECVFROM && c->kind <= CALL_RECVMMSG) {
        c->sk = sk;
        c->deferred = 1;
        return 0;
    }
    flow_with_peer(key, id, 0, 0);
    return 1;
}

/* ------------------------------------------------------- per-CPU flow slots
 *
 * Most events continue what the same CPU counted a moment ago: the next
 * write of a stream, the reply on the same socket. Each CPU keeps its latest
 * flows in a few slots (chosen by the socket's address): an event on a
 * slot's socket and flow adds to the slot's pending counts, which costs no
 * hash lookup at all. The pending counts are added to traffic_map, pid_stats
 * and protocol_totals (flushed) when the slot is taken by another flow, at
 * the slot's first event after a clock tick (jiffy), and when user space asks
 * before each read (a zero-byte send of its own on each CPU: see
 * flush_request), so that the maps are exact when read. Only events of the
 * same CPU touch its slots, and tracepoint programs run with preemption off,
 * so the slots need no atomics. */
#define NETMON_SLOTS 16                  /* per CPU; a power of two */

struct flow_slot {
    __u64 sk;
    struct sock_ident ident;   /* the socket, as sock_idents holds it */
    struct traffic_key key;    /* the flow of the pending counts */
    struct traffic_stats pending;   /* its counters only */
    __u64 flushed_at;          /* bpf_jiffies64() at the last flush */
};

BPF_PERCPU_ARRAY(flow_slots, struct flow_slot, NETMON_SLOTS);
BPF_ARRAY(flusher, __u32, 1);    /* netmon's tgid: its zero-byte sends flush */

/* The counters of `from` added to those of `to`. */
static __always_inline void add_counters(struct traffic_stats *to, struct traffic_stats *from)
{
    to->bytes_sent += from->bytes_sent;
    to->bytes_recv += from->bytes_recv;
    to->packets_sent += from->packets_sent;
    to->packets_recv += from->packets_recv;
}

/* Add a slot's pending counts to the maps. The entries normally exist: the
 * slot's first event created them (with the process's name). One retired
 * by user space since is made again, named from this CPU's copy of the
 * process, since the current task may be another process. */
static __always_inline void flush_slot(struct flow_slot *slot, __u64 now)
{
    slot->flushed_at = now;
    struct traffic_stats *pending = &slot->pending;
    if (!(pending->packets_sent | pending->packets_recv))
        return;
    struct traffic_key *key = &slot->key;
    __u32 pid = key->pid;
    struct traffic_stats *ps = pid_stats.lookup(&pid);
    struct traffic_stats *st = traffic_map.lookup(key);
    if (!st) {
        struct traffic_stats fresh = {};
        if (ps) {
            __builtin_memcpy(fresh.comm, ps->comm, sizeof(fresh.comm));
            fresh.flags = ps->flags;
            fresh.cgroup_id = ps->cgroup_id;
            fresh.named_ns = ps->named_ns;
        }
        if (traffic_map.insert(key, &fresh) == 0)
            count(NETMON_COUNTER_FLOWS_CREATED);
        st = traffic_map.lookup(key);
    }
    if (st)
        add_counters(st, pending);
    else
        count(NETMON_COUNTER_FLOW_DROPS);
    if (!ps) {
        struct traffic_stats fresh = {};
        pid_stats.insert(&pid, &fresh);
        ps = pid_stats.lookup(&pid);
    }
    if (ps)
        add_counters(ps, pending);
    __u32 proto = key->protocol;
    __u64 *total = protocol_totals.lookup(&proto);
    if (total)
        *total += pending->bytes_sent + pending->bytes_recv;
    pending->bytes_sent = pending->bytes_recv = pending->packets_sent = pending->packets_recv = 0;
}

/* User space, before it reads the maps, sends zero bytes on a socket of its
 * own from each CPU in turn: flush all of this CPU's slots. */
static __always_inline void flush_request(void)
{
    __u32 zero = 0;
    __u32 *tgid = flusher.lookup(&zero);
    if (!tgid || *tgid != (__u32)(bpf_get_current_pid_tgid() >> 32))
        return;
    __u64 now = bpf_jiffies64();
#pragma clang loop unroll(disable)
    for (__u32 i = 0; i < NETMON_SLOTS; i++) {
        __u32 idx = i;
        struct flow_slot *slot = flow_slots.lookup(&idx);
        if (slot)
            flush_slot(slot, now);
    }
}

static __always_inline int same_key(struct traffic_key *a, struct traffic_key *b)
{
    __u64 *x = (__u64 *)a, *y = (__u64 *)b;   /* 24 bytes, 8-byte aligned in both */
    return x[0] == y[0] && x[1] == y[1] && x[2] == y[2];
}

static __always_inline int count_event(__u64 sk, int ret, int flags, int sending)
{
    struct sock_head head;
    struct traffic_key key;
    if (ret <= 0) {
        if (ret == 0 && sending)
            flush_request();
        return 0;
    }
    if ((!sending && (flags & NETMON_MSG_PEEK)) || read_head(&head, sk))
        return 0;
    if (head.family != NETMON_AF_INET && head.family != NETMON_AF_INET6 &&
        head.family != NETMON_AF_PACKET)
        return 0;   /* AF_UNIX, netlink, ...: not network traffic */
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    __u32 idx = (__u32)((sk * 0x9E3779B97F4A7C15ULL) >> 60) & (NETMON_SLOTS - 1);
    struct flow_slot *slot = flow_slots.lookup(&idx);
    if (!slot)
        return 0;
    if (slot->sk == sk && slot->ident.key.pid == tgid &&
        same_socket(&slot->ident, &head, (char *)sk)) {
        if (!event_flow(&key, &slot->ident, sk, sending))
            return 0;
        if (same_key(&key, &slot->key)) {
            add_stats(&slot->pending, ret, 1, sending);
            __u64 now = bpf_jiffies64();
            if (now != slot->flushed_at)
                flush_slot(slot, now);
            return 0;
        }
        /* The same socket, another peer: counted at once, in the right
         * process's context; the slot follows the new flow. */
        account(&key, ret, 1, sending);
        flush_slot(slot, bpf_jiffies64());
        slot->key = key;
        return 0;
    }
    struct sock_ident scratch;
    struct sock_ident *id = ident_of(sk, &head, tgid, &scratch);
    if (!id || !event_flow(&key, id, sk, sending))
        return 0;
    /* A flow's first event on this CPU is counted at once, which creates its
     * entries in its own process's context; the slot takes the rest. */
    account(&key, ret, 1, sending);
    flush_slot(slot, bpf_jiffies64());
    slot->sk = sk;
    __builtin_memcpy(&slot->ident, id, sizeof(slot->ident));
    slot->key = key;
    return 0;
}

/* The two counting programs are attached by user space after the cgroup
 * programs, so that no unconnected UDP call is counted without its peer, and
 * after the listening ports that predate netmon are known, so that no
 * socket's side is judged without them. Where the kernel's BTF shows the
 * tracepoints' arguments as (sk, ret, flags), user space compiles them as raw
 * tracepoint programs (NETMON_SOCK_RAW_TP): those get the arguments as they
 * are, without the trace-event record that a tracepoint program reads them
 * from, and cost less per event. */
#ifdef NETMON_SOCK_RAW_TP
int count_send(struct bpf_raw_tracepoint_args *ctx)
{
    return count_event(ctx->args[0], (int)ctx->args[1], (int)ctx->args[2], 1);
}

int count_recv(struct bpf_raw_tracepoint_args *ctx)
{
    return count_event(ctx->args[0], (int)ctx->args[1], (int)ctx->args[2], 0);
}
#else
int count_send(struct tracepoint__sock__sock_send_length *args)
{
    return count_event((__u64)args->sk, args->ret, args->flags, 1);
}

int count_recv(struct tracepoint__sock__sock_recv_length *args)
{
    return count_event((__u64)args->sk, args->ret, args->flags, 0);
}
#endif

/* ------------------------------ raw and ICMP peers (attached on demand) */

/* Count raw and ICMP sockets as they come and go (cgroup sock programs run
 * only at socket creation and release), so that user space attaches the
 * raw_* programs below (the sources of their receives) only while such
 * sockets exist. */
static __always_inline int is_raw_or_icmp(struct bpf_sock *sk)
{
    return sk->type == NETMON_SOCK_RAW || sk->protocol == NETMON_IPPROTO_ICMP ||
           sk->protocol == NETMON_IPPROTO_ICMPV6;
}

int raw_socket_created(struct bpf_sock *sk)
{
    if (is_raw_or_icmp(sk))
        count(NETMON_COUNTER_RAW_OPENED);
    return 1;
}

int raw_socket_released(struct bpf_sock *sk)
{
    if (is_raw_or_icmp(sk))
        count(NETMON_COUNTER_RAW_CLOSED);
    return 1;
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

/* Receives: remembered only when the caller asked for the peer's address. */
int raw_enter_recvfrom(struct tracepoint__syscalls__sys_enter_recvfrom *args)
{
    if (args->addr) {
        struct call_ctx c = {.kind = CALL_RECVFROM, .addr = (__u64)args->addr};
        stash(&c);
    }
    return 0;
}

int raw_exit_recvfrom(struct tracepoint__syscalls__sys_exit_recvfrom *args)
{
    exit_recv(args->ret, CALL_RECVFROM);
    return 0;
}

int raw_enter_recvmsg(struct tracepoint__syscalls__sys_enter_recvmsg *args)
{
    if (msghdr_name((__u64)args->msg)) {
        struct call_ctx c = {.kind = CALL_RECVMSG, .ptr = (__u64)args->msg};
        stash(&c);
    }
    return 0;
}

int raw_exit_recvmsg(struct tracepoint__syscalls__sys_exit_recvmsg *args)
{
    exit_recv(args->ret, CALL_RECVMSG);
    return 0;
}

int raw_enter_recvmmsg(struct tracepoint__syscalls__sys_enter_recvmmsg *args)
{
    struct call_ctx c = {.kind = CALL_RECVMMSG, .ptr = (__u64)args->mmsg};
    stash(&c);
    return 0;
}

int raw_exit_recvmmsg(struct tracepoint__syscalls__sys_exit_recvmmsg *args)
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

/* Attached by user space (not automatically at load) once the listening
 * ports that predate netmon are known, so that no socket's side is judged
 * without them. */
#define SYSCALL_PAIR(name, kind, ptr, addr, flags)                                  \
    int count_enter_##name(struct tracepoint__syscalls__sys_enter_##name *args)     \
    {                                                                               \
        enter_call(args->fd, kind, ptr, addr, flags);                               \
        return 0;                                                                   \
    }                                                                               \
    int count_exit_##name(struct tracepoint__syscalls__sys_exit_##name *args)       \
    {                                                                               \
        exit_call(args->ret, kind);                                                 \
        return 0;                                                                   \
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
