/* netmon: the one definition of what the kernel program and user space share.
 *
 * User space reads the struct layouts through BCC (which builds ctypes types
 * from these definitions) and the NETMON_* constants by parsing this file, so
 * nothing here is copied by hand. A trailing "name:" comment gives the name
 * user space shows for an id.
 */
#ifndef NETMON_H
#define NETMON_H

/* Limits; user space may override NETMON_MAX_FLOWS with -D. */
#ifndef NETMON_MAX_FLOWS
#define NETMON_MAX_FLOWS 10240
#endif
#define NETMON_MAX_PROCESSES NETMON_MAX_FLOWS
#define NETMON_MAX_CALLS 16384      /* syscalls in flight (one per thread) */
#define NETMON_MAX_SOCKETS 16384    /* sockets whose flow identity is remembered */
#define NETMON_MAX_LISTEN_PORTS 4096
#define NETMON_MAX_MMSG 1024        /* messages per sendmmsg/recvmmsg (UIO_MAXIOV) */
#define NETMON_MAX_MMSG_PEERS 64    /* messages whose own peer address is read */
#define NETMON_COMM_LEN 16

/* Protocols. */
#define NETMON_PROTO_TCP 1          /* name: TCP */
#define NETMON_PROTO_UDP 2          /* name: UDP */
#define NETMON_PROTO_ICMP 3         /* name: ICMP */
#define NETMON_PROTO_ICMPV6 4       /* name: ICMPv6 */
#define NETMON_PROTO_RAW 5          /* name: RAW */
#define NETMON_PROTO_PACKET 6       /* name: PACKET */

#define NETMON_PROTO_SLOTS 8        /* protocol_totals: one slot per id above */

/* Address families. */
#define NETMON_FAMILY_IPV4 1        /* name: IPv4 */
#define NETMON_FAMILY_IPV6 2        /* name: IPv6 */
#define NETMON_FAMILY_PACKET 3      /* name: PACKET */

/* Which side of the conversation the process is on. */
#define NETMON_ROLE_UNKNOWN 0       /* name: unknown */
#define NETMON_ROLE_CLIENT 1        /* name: client */
#define NETMON_ROLE_SERVER 2        /* name: server */

/* traffic_stats.flags */
#define NETMON_FLAG_KERNEL_THREAD 1

/* Slots of the `counters` array. */
#define NETMON_COUNTER_FLOW_DROPS 0     /* flows that could not be inserted */
#define NETMON_COUNTER_FLOWS_CREATED 1  /* flows inserted since start */
#define NETMON_COUNTER_RAW_OPENED 2     /* raw and ICMP sockets created since start */
#define NETMON_COUNTER_RAW_CLOSED 3     /* raw and ICMP sockets released since start */
#define NETMON_COUNTER_MAX 4

/* Key of traffic_map and anomaly_map: one flow. */
struct traffic_key {
    __u32 pid;               /* tgid */
    __u8 protocol;           /* NETMON_PROTO_* */
    __u8 family;             /* NETMON_FAMILY_* */
    __u8 role;               /* NETMON_ROLE_* */
    __u8 pad;
    __u16 port;              /* service port, host order; 0 when none */
    __u16 pad2;
    __u8 remote_ip[16];      /* IPv4 in the first 4 bytes; all zero if unknown */
};

/* Value of traffic_map (per flow) and pid_stats (per process). Both maps are
 * per CPU: each CPU adds to its own copy without atomics, and user space sums
 * the counters of all copies. The name and cgroup are written once when the
 * entry is created (and for pid_stats again at a rename), in the copy of the
 * CPU that did it: the copy with the newest `named_ns` holds the current name
 * and cgroup. */
struct traffic_stats {
    __u64 bytes_sent;
    __u64 bytes_recv;
    __u64 packets_sent;
    __u64 packets_recv;
    __u64 named_ns;          /* bpf_ktime_get_ns() when comm was written; 0: none */
    char comm[NETMON_COMM_LEN];
    __u32 flags;             /* NETMON_FLAG_*, in the copy that has the name */
    __u32 pad;
    __u64 cgroup_id;         /* cgroup v2 id (its directory's inode), with the name */
};

/* Key of listen_ports: local ports that make a socket the server side. */
struct port_key {
    __u16 port;
    __u8 protocol;
    __u8 pad;
};

#endif /* NETMON_H */
