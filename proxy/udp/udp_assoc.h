/* The UDP listener's types (udp_listener.c, assoc_table.c, udp_caps.c,
 * udp_send.c) and one client association (udp_assoc.c).
 *
 * An association is one client address:port on one listener:
 *
 *   HANDSHAKE    client DTLS handshake (secure = on only); counts as
 *                half-open and ends at handshake_timeout
 *   CONNECTING   backend socket being set up: resolving, backend DTLS
 *                handshake (until connect_timeout); client datagrams wait
 *                in a small bounded queue
 *   ESTABLISHED  datagrams flow both ways; ends after session_timeout idle,
 *                on close_notify from either side, or when the client
 *                starts a new handshake from the same address and port
 *   CLOSING      handles closing; freed in the last close callback
 *
 * A new ClientHello from the address and port of an association that is
 * past its handshake (RFC 6347 4.2.8) replaces it only once the client has
 * shown it is really there: the new handshake runs as the old
 * association's successor (not findable in the table; epoch-0 records go
 * to it, later epochs to both, each session drops what it cannot decrypt)
 * and replaces it when it completes.  With cookies the ClientHello must
 * carry a valid one first (otherwise it gets a HelloVerifyRequest, at most
 * one a second).  Without cookies the successor sends nothing until the
 * same ClientHello comes again TG_SUCCESSOR_WAIT_MS or more later, then
 * obeys the 3x rule, and ends as soon as the old session authenticates a
 * record from the peer.  At most one successor per peer; a half-open
 * association is simply replaced.
 *
 * Ownership: the listener owns its associations (its table, assoc_table.h)
 * until tg_assoc_close(); the memory lives until the last handle's close
 * callback.  Each datagram sent owns its bytes until its send callback,
 * which touches only the listener's counters, never the association.
 * The listener outlives every association (it closes its socket only when
 * none is alive). */
#ifndef TG_UDP_ASSOC_H
#define TG_UDP_ASSOC_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <uv.h>

#include "assoc_table.h"
#include "dgram_bio.h"
#include "dtls.h"
#include "dtls_cookie.h"
#include "log.h"
#include "session.h"
#include "tls.h"

#define TG_UDP_LISTENER_MAGIC 0x7467756cu
#define TG_UDP_ASSOC_MAGIC 0x74677561u
#define TG_UDP_RECV_BUF 65536
/* The listening socket reads with recvmmsg: libuv hands out one chunk of
 * TG_UDP_RECV_BUF per datagram (it needs that size), this many per call. */
#define TG_UDP_MMSG_CHUNKS 16
/* Receive buffer asked for the listening socket (bursts of handshakes and
 * of devices waking together); SO_RCVBUFFORCE when allowed, else capped
 * by net.core.rmem_max. */
#define TG_UDP_RCVBUF (8 << 20)
#define TG_DTLS_MAX_PLAIN 16384   /* largest DTLS record payload */
#define TG_UDP_SENDQ_MAX (4u << 20) /* bytes queued on one socket before dropping */
#define TG_ASSOC_QUEUE_MAX 32     /* client datagrams held while connecting */
#define TG_ASSOC_QUEUE_BYTES (128 * 1024)
/* Anti-amplification (RFC 9000 section 8's rule, for DTLS without a
 * verified cookie): until a peer has shown that it receives what we send
 * (its handshake completed), at most TG_AMP_FACTOR times the bytes it sent
 * go to it, and nothing is sent on a timer. */
#define TG_AMP_FACTOR 3
#define TG_AMP_HOLD_MAX (32 * 1024) /* flight bytes held for such a peer */
#define TG_SUCCESSOR_WAIT_MS 500    /* below any client's retransmission timer */
/* An established association quiet this long releases its record buffers
 * (where the library keeps them, TG_DTLS_IDLE_BUFFERS). */
#define TG_ASSOC_IDLE_BUFFERS_MS 1000

/* Service-wide UDP state, shared by every worker. */
struct tg_dtls_svc {
  int cookies;              /* stateless cookies are in use */
  tg_cookie_keys_t keys;
  int keys_ready;
  atomic_int half_open;     /* across workers, for max_half_open */
  int max_half_open, max_half_open_per_source;
  int max_assoc_per_source; /* resolved (the key, or derived from the fd limit) */
  /* Per source (IPv4 address / IPv6 /64) across workers: half-open
   * handshakes and associations.  Taken only when an association is
   * admitted or ends, never per datagram. */
  uv_mutex_t src_mu;
  int src_mu_ready;
  uint64_t src_seed;
  struct tg_src_count **src_buckets;
};

/* Counters of one listener on one worker, logged when it closes. */
typedef struct {
  uint64_t dgrams_in, bytes_in;     /* from clients, on the listening socket */
  uint64_t dgrams_out, bytes_out;   /* to clients */
  uint64_t backend_dgrams_out, backend_dgrams_in;
  uint64_t hvr_sent, hvr_limited, cookie_ok, cookie_bad;
  uint64_t drop_short, drop_garbage, drop_not_hello, drop_truncated;
  uint64_t drop_half_open_total, drop_half_open_addr, drop_max_conn;
  uint64_t drop_draining, drop_sendq, send_errors, drop_queue;
  uint64_t too_large;
  uint64_t amp_held, evicted, drop_assoc_source, drop_assoc_total, local_errors;
  uint64_t half_open_peak;          /* created, peak: in the table */
  uint64_t hs_ok, hs_failed, hs_timeout, restarted;
  uint64_t kernel_drops;            /* the listening socket's receive queue overflowed */
} tg_udp_stats_t;

typedef struct tg_udp_listener tg_udp_listener_t;

typedef struct tg_addr_count tg_addr_count_t;

struct tg_udp_listener {
  uint32_t magic;
  uv_udp_t udp;
  tg_udp_listener_t *next;          /* the worker's list */
  tg_worker_t *w;
  tg_runtime_t *rt;                 /* a reference: new clients use its ... */
  tg_service_t *svc;                /* ... service */
  struct tg_dtls_svc *ds;           /* svc->dtls */
  int draining;                     /* no new clients; closes when empty */
  int closing;
  uint64_t seed;                    /* keyed hash of peer addresses */
  tg_assoc_table_t table;           /* its associations (assoc_table.h) */
  size_t half_open;                 /* of this worker */
  tg_addr_count_t **addr_buckets;      /* this worker's half-open handshakes per source */
  tg_udp_stats_t st;
  uint64_t last_log_ms[8];          /* rate limits (tg_udp_rate_ok) */
  uint8_t *mmsgbuf;                 /* the listening socket's recvmmsg chunks; NULL: recvbuf */
  uint32_t drops_seen;              /* the kernel's drop count when last read */
  uint64_t drops_read_ms;
  uint8_t recvbuf[TG_UDP_RECV_BUF];
  uint8_t plainbuf[TG_DTLS_MAX_PLAIN + 1024];
};

typedef enum {
  TG_ASSOC_HANDSHAKE = 0,
  TG_ASSOC_CONNECTING,
  TG_ASSOC_ESTABLISHED,
  TG_ASSOC_CLOSING
} tg_assoc_state_t;

typedef struct tg_qdgram {
  struct tg_qdgram *next;
  size_t len;
  uint8_t data[];
} tg_qdgram_t;

struct tg_udp_assoc {
  tg_session_t s;                   /* first: id, peer name, runtime, refs,
                                     * backend attempts, state
                                     * (tg_assoc_state_t); session.h */
  uint32_t magic;
  tg_udp_listener_t *ul;
  tg_udp_assoc_t *hnext;            /* hash chain */
  tg_udp_assoc_t *prev, *next;      /* listener list */
  uint64_t hash;
  struct sockaddr_storage peer;
  uint8_t hello_random[32];         /* of the ClientHello that made it */
  tg_udp_assoc_t *successor;        /* a new handshake from the same peer */
  tg_udp_assoc_t *predecessor;      /* set on a successor until it completes */
  int findable;                     /* in the listener's hash table */
  uint64_t last_hvr_ms;             /* HelloVerifyRequests to an established peer */
  uint8_t hvr_random[32];           /* a cookieless ClientHello in an established */
  uint64_t hvr_first_ms;            /* peer's name, and when it came first */
  uint64_t peer_auth_ms;            /* last record the session authenticated */
  tg_addr_count_t *src;                /* while half-open: its source on this worker */
  tg_udp_assoc_t *ho_prev, *ho_next;/* that source's half-open list, oldest first */
  int src_counted;                  /* in the service's per-source association count */
  int total_counted;                /* in the process-wide association count */

  /* Anti-amplification while !validated (see TG_AMP_FACTOR): the flight
   * the session wrote last, and the first datagram of it not yet sent. */
  int validated;
  uint64_t amp_in, amp_out;
  tg_qdgram_t *fhead, *ftail, *fnext;
  size_t fbytes;
  int new_burst;                    /* the next write starts a new flight */
  /* A parallel handshake in an established peer's name (no cookie) sends
   * nothing until the peer sends its ClientHello again, at least
   * TG_SUCCESSOR_WAIT_MS later, and ends as soon as the established
   * session authenticates a record from the peer (then the ClientHello
   * was not the peer's). */
  int hold_all;
  uint64_t hello_ms;

  SSL *ssl;                         /* client side; NULL when secure = off */
  tg_tls_note_t note;
  tg_dgram_io_t cio;

  SSL *bssl;                        /* backend side; NULL unless backend_secure */
  tg_tls_note_t bnote;
  tg_dgram_io_t bio_io;
  uv_udp_t bsock;
  int bsock_open;
  int backend_answered;

  uv_timer_t timer;
  int timer_armed;
  uint64_t timer_due;
  int half_open;                    /* counted in the half-open caps */
  uint64_t deadline_ms;
  int buffers_released;             /* a->ssl's record buffers, while idle */
  uint64_t buffers_retry_ms;        /* release not before (data was pending) */
  tg_qdgram_t *qhead, *qtail;
  size_t qcount, qbytes;
  int warned_too_large;
};

/* Rate-limit slots for repeated log lines (one line per second each). */
enum { RL_RECV_ERROR = 0, RL_DROP, RL_HALF_OPEN, RL_SEND, RL_MAX_CONN, RL_SOURCE,
       RL_TOTAL, RL_EVICT };

/* 1 when a line of this slot may be logged now (at most one a second). */
static inline int tg_udp_rate_ok(tg_udp_listener_t *ul, int slot) {
  uint64_t now = uv_now(&ul->w->loop);
  if (ul->last_log_ms[slot] && now - ul->last_log_ms[slot] < 1000) return 0;
  ul->last_log_ms[slot] = now;
  return 1;
}

/* The association of a DTLS session (SSL ex_data; dtls.c's cookie
 * callbacks read its peer). */
int tg_dtls_assoc_index(void);

/* ---- an association (udp_assoc.c), called by the listener ---- */
/* Creates an association in the table (state HANDSHAKE when secure, else
 * CONNECTING with its backend being set up).  NULL when out of memory. */
tg_udp_assoc_t *tg_assoc_new(tg_udp_listener_t *ul, const struct sockaddr *peer,
                             uint64_t hash, tg_udp_assoc_t *predecessor);
/* Starts the DTLS server session with the ClientHello that created a;
 * cookie_checked: it carried a valid cookie (run DTLSv1_listen). */
void tg_assoc_start_dtls(tg_udp_assoc_t *a, const uint8_t *p, size_t n,
                         int cookie_checked);
/* Starts a plain association (secure = off) with its first datagram. */
void tg_assoc_start_plain(tg_udp_assoc_t *a, const uint8_t *p, size_t n);
/* A datagram from the association's client. */
void tg_assoc_client_datagram(tg_udp_assoc_t *a, const uint8_t *p, size_t n);
/* The client's ClientHello again (same random): a retransmission. */
void tg_assoc_hello_again(tg_udp_assoc_t *a, const uint8_t *p, size_t n);
void tg_assoc_close(tg_udp_assoc_t *a, tg_log_level_t level, int notify,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
