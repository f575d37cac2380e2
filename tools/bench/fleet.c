/* fleet -- the benchmark's fleet-scale DTLS/UDP client and baseline relay
 * (tools/bench/run builds it; OpenSSL 3).
 *
 * An IoT front holds thousands of mostly idle devices.  One process of this
 * tool plays thousands of them from 127.0.0.1, each association on its own
 * UDP socket bound to an explicit port below the kernel's ephemeral range
 * (the proxy's backend sockets take ephemeral ports, and 15,000 of each do
 * not fit in 28,000), all driven by one epoll loop.
 *
 *   fleet hold  -m MODE [-N COUNT] [-c CONC] [-x SECONDS] HOST PORT
 *       Opens COUNT associations (at most CONC handshakes at once), sends
 *       one datagram on each and waits for its echo, then keeps only the
 *       socket (the client forgets its DTLS state; the proxy keeps its
 *       association until its session_timeout).  Prints
 *         held=N errors=E seconds=S
 *       once all are up, then waits until standard input closes (or -x
 *       SECONDS pass, default 120) and exits without a close_notify, so the
 *       proxy times the fleet out.
 *
 *   fleet hs    -m MODE [-r] [-c CONC] [-d SECONDS] HOST PORT
 *       Handshakes in a loop, CONC at a time, for SECONDS: each one new
 *       socket, DTLS 1.2 handshake (-r: offering the first session's ticket),
 *       close_notify, close.  Prints
 *         handshakes=N resumed=R errors=E seconds=S rate=N/S proto=... cipher=...
 *
 *   fleet dgram -m MODE [-r] [-a ASSOCS] [-w WINDOW] [-s SIZE] [-d SECONDS] HOST PORT
 *       Sets up ASSOCS associations (-r: resuming the first one's session,
 *       which is quicker for thousands), prints "established=N errors=E", waits
 *       0.5 s, then keeps WINDOW datagrams of SIZE bytes in flight in total
 *       (default 64 x 100), spread round-robin over all associations (each
 *       association has at most max(1, WINDOW/ASSOCS) in flight), for
 *       SECONDS, counting echoes; a datagram not echoed within 1 s is
 *       counted lost.  Prints
 *         datagrams=N lost=L seconds=S rate=N/S
 *       N counts round trips client -> proxy -> backend -> proxy -> client.
 *
 *   fleet relay [-i IDLE_SECONDS] [-x SECONDS] PORT BACKEND_PORT
 *       The baseline: a minimal plain UDP relay of tlsgate's shape, one
 *       thread.  recvmmsg (64 at a time) on the listening socket; one
 *       connected backend socket per client address:port, found through an
 *       open-addressing hash table; epoll on the backend sockets; replies
 *       go back with sendto on the listening socket; an association idle for
 *       IDLE_SECONDS (default 60) is closed by a sweep once a second.
 *
 * MODE: plain (UDP, no DTLS), psk (PSK-AES128-CBC-SHA and friends: no
 * certificate, no ECDHE), ecdhe-psk, ecdsa (ECDHE-ECDSA-AES128-GCM-SHA256,
 * P-256; the certificate is not verified).  PSK identity "fleet", key
 * 32 bytes of 0x5a (tools/bench/run writes the same into the proxy's file).
 * The client's first retransmission timer is 100 ms (OpenSSL's is 1 s): a
 * proxy without cookies sends a certificate flight larger than 3x the
 * ClientHello only after the retransmitted ClientHello, so a full ECDSA
 * handshake without cookies waits for that timer once; -c (default 64)
 * keeps enough handshakes in flight to load the proxy anyway.  (Padding
 * the ClientHello with SSL_OP_TLSEXT_PADDING would avoid the wait, but
 * stalled PSK handshakes by 1 s against tlsgate: not used.)  Everything is bounded:
 * every handshake by 5 s, every run by its options and an alarm().
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { M_PLAIN, M_PSK, M_ECDHE_PSK, M_ECDSA };
enum { S_FREE, S_HS, S_UP, S_DONE };

typedef struct {
  int fd;
  SSL *ssl;
  int state;
  int inflight;
  double t; /* handshake start, or last send/receive in dgram mode */
} conn_t;

static int mode = M_ECDSA, resume;
static SSL_CTX *ctx;
static SSL_SESSION *saved; /* -r: the session offered by every handshake */
static struct sockaddr_in target;
static int ep;
static int next_port = 10000; /* explicit source ports: 10000..32767 */
static char proto[32] = "-", cipher[64] = "-";
static long n_resumed;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void) {
  fprintf(stderr, "usage: fleet hold|hs|dgram -m plain|psk|ecdhe-psk|ecdsa [options] HOST PORT\n"
                  "       fleet relay [-i IDLE] [-x SECONDS] PORT BACKEND_PORT\n");
  exit(2);
}

static void raise_nofile(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

static unsigned psk_cb(SSL *ssl, const char *hint, char *id, unsigned max_id, unsigned char *psk,
                       unsigned max_psk) {
  (void)ssl;
  (void)hint;
  if (max_id < 6 || max_psk < 32) return 0;
  memcpy(id, "fleet", 6);
  memset(psk, 0x5a, 32);
  return 32;
}

/* OpenSSL's DTLS timer starts at 1 s and doubles; 100 ms here. */
static unsigned timer_cb(SSL *ssl, unsigned prev_us) {
  (void)ssl;
  return prev_us == 0 ? 100000 : (prev_us >= 2000000 ? 2000000 : prev_us * 2);
}

static void ctx_init(void) {
  if (mode == M_PLAIN) return;
  ctx = SSL_CTX_new(DTLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set1_groups_list(ctx, "X25519:P-256");
  const char *ciphers = mode == M_PSK ? "PSK-AES128-GCM-SHA256:PSK-AES128-CBC-SHA256:PSK-AES128-CBC-SHA"
                        : mode == M_ECDHE_PSK
                            ? "ECDHE-PSK-CHACHA20-POLY1305:ECDHE-PSK-AES128-CBC-SHA256:ECDHE-PSK-AES128-CBC-SHA"
                            : "ECDHE-ECDSA-AES128-GCM-SHA256";
  if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
    fprintf(stderr, "fleet: cipher list %s refused\n", ciphers);
    exit(1);
  }
  if (mode != M_ECDSA) SSL_CTX_set_psk_client_callback(ctx, psk_cb);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
}

/* A socket bound to 127.0.0.1:<next free port below 32768>, connected to
 * the target, non-blocking, registered with epoll. */
static int udp_open(conn_t *c) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  for (int tries = 0; tries < 2000; tries++) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)next_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (++next_port > 32767) next_port = 10000;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
      if (connect(fd, (struct sockaddr *)&target, sizeof(target)) != 0) break;
      struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
      if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) break;
      return fd;
    }
  }
  close(fd);
  return -1;
}

static void conn_close(conn_t *c, int notify) {
  if (c->ssl) {
    if (notify) SSL_shutdown(c->ssl);
    SSL_free(c->ssl); /* the BIO does not own the fd */
    c->ssl = NULL;
  }
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->state = S_FREE;
  c->inflight = 0;
  ERR_clear_error();
}

/* Forgets the client's DTLS state but keeps the socket (hold mode). */
static void conn_shed(conn_t *c) {
  SSL_free(c->ssl);
  c->ssl = NULL;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  c->state = S_DONE;
}

static int conn_start(conn_t *c) {
  c->fd = udp_open(c);
  if (c->fd < 0) return -1;
  c->t = now();
  c->inflight = 0;
  if (mode == M_PLAIN) {
    c->state = S_UP;
    return 0;
  }
  c->ssl = SSL_new(ctx);
  BIO *bio = BIO_new_dgram(c->fd, BIO_NOCLOSE);
  BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, &target);
  SSL_set_bio(c->ssl, bio, bio);
  SSL_set_mtu(c->ssl, 1400);
  DTLS_set_timer_cb(c->ssl, timer_cb);
  if (resume && saved) SSL_set_session(c->ssl, saved);
  SSL_set_connect_state(c->ssl);
  c->state = S_HS;
  return 0;
}

/* Drives a handshake: 1 done, 0 in progress, -1 failed. */
static int conn_handshake(conn_t *c) {
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    c->state = S_UP;
    if (proto[0] == '-') {
      snprintf(proto, sizeof(proto), "%s", SSL_get_version(c->ssl));
      snprintf(cipher, sizeof(cipher), "%s", SSL_get_cipher_name(c->ssl));
    }
    if (SSL_session_reused(c->ssl)) n_resumed++;
    if (resume && !saved) saved = SSL_get1_session(c->ssl);
    return 1;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  return -1;
}

static char payload[1500];

static int conn_send(conn_t *c, int size) {
  int r = c->ssl ? SSL_write(c->ssl, payload, size) : (int)send(c->fd, payload, (size_t)size, 0);
  if (r == size) {
    c->inflight++;
    return 0;
  }
  ERR_clear_error();
  return -1;
}

/* Reads whatever arrived: the number of datagrams, -1 on a fatal error. */
static int conn_recv(conn_t *c) {
  char in[2048];
  int n = 0;
  for (;;) {
    int r = c->ssl ? SSL_read(c->ssl, in, sizeof(in)) : (int)recv(c->fd, in, sizeof(in), 0);
    if (r > 0) {
      n++;
      continue;
    }
    if (c->ssl) {
      int e = SSL_get_error(c->ssl, r);
      ERR_clear_error();
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return n;
      return n ? n : -1;
    }
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNREFUSED) ? n : -1;
  }
}

/* After a handshake step r (conn_handshake's value): with `echo`, a new
 * association first sends a datagram.  Returns 1 when c is set up (on_up
 * called), -1 when it failed (closed), 0 while it is still under way. */
static int settle(conn_t *c, int r, int echo, void (*on_up)(conn_t *)) {
  if (r < 0) {
    conn_close(c, 0);
    return -1;
  }
  if (r == 1 && echo) {
    conn_send(c, 16);
    c->t = now();
    return 0;
  }
  if (r == 1) on_up(c);
  return r;
}

/* Sets up `count` associations, at most `conc` handshakes at once; with
 * `echo`, each one's first datagram must come back before it counts.
 * on_up is called when one is fully set up.  Returns failures. */
static long establish(conn_t *cs, long count, int conc, int echo, double end, void (*on_up)(conn_t *)) {
  long started = 0, done = 0, errs = 0, active = 0;
  struct epoll_event evs[256];
  while (done < count && now() < end) {
    while (active < conc && started < count) {
      conn_t *c = &cs[started++];
      active++;
      if (conn_start(c) != 0) {
        errs++, done++, active--;
        c->state = S_FREE;
        continue;
      }
      int r = settle(c, c->ssl ? conn_handshake(c) : 1, echo, on_up);
      if (r) done++, active--, errs += r < 0;
    }
    int n = epoll_wait(ep, evs, 256, 20);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->state == S_HS) {
        int r = settle(c, conn_handshake(c), echo, on_up);
        if (r) done++, active--, errs += r < 0;
      } else if (c->state == S_UP && echo && c->inflight) {
        int r = conn_recv(c);
        if (r > 0) {
          c->inflight = 0;
          on_up(c), done++, active--;
        } else if (r < 0) {
          conn_close(c, 0);
          errs++, done++, active--;
        }
      }
    }
    /* Retransmissions and the 5 s bound, over the ones in flight. */
    double t = now();
    for (long i = started - 1, seen = 0; i >= 0 && seen < active; i--) {
      conn_t *c = &cs[i];
      if (c->state != S_HS && !(c->state == S_UP && echo && c->inflight)) continue;
      seen++;
      if (t - c->t > 5.0) {
        conn_close(c, 0);
        errs++, done++, active--;
      } else if (c->state == S_HS) {
        DTLSv1_handle_timeout(c->ssl);
      } else if (t - c->t > 1.0) { /* the echo was lost: ask again */
        c->inflight = 0;
        conn_send(c, 16);
      }
    }
  }
  return errs + (count - done);
}

static void parse_target(int argc, char **argv) {
  if (argc - optind != 2) usage();
  target = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[optind + 1]))};
  if (inet_pton(AF_INET, argv[optind], &target.sin_addr) != 1) usage();
}

static int parse_mode(const char *s) {
  if (!strcmp(s, "plain")) return M_PLAIN;
  if (!strcmp(s, "psk")) return M_PSK;
  if (!strcmp(s, "ecdhe-psk")) return M_ECDHE_PSK;
  if (!strcmp(s, "ecdsa")) return M_ECDSA;
  usage();
  return 0;
}

/* ---- hold ------------------------------------------------------------- */

static void hold_up(conn_t *c) { conn_shed(c); }

static int hold_main(long count, int conc, double hold_secs) {
  conn_t *cs = calloc((size_t)count, sizeof(*cs));
  double t0 = now();
  alarm((unsigned)(hold_secs + count / 100 + 60));
  long errs = establish(cs, count, conc, 1, t0 + 30 + count / 50.0, hold_up);
  long held = 0;
  for (long i = 0; i < count; i++) held += cs[i].state == S_DONE;
  printf("held=%ld errors=%ld seconds=%.3f\n", held, errs, now() - t0);
  fflush(stdout);
  struct pollfd p = {.fd = 0, .events = POLLIN};
  double end = now() + hold_secs;
  char buf[256];
  while (now() < end) {
    if (poll(&p, 1, 200) > 0 && read(0, buf, sizeof(buf)) <= 0) break;
  }
  return 0; /* exit closes every socket; no close_notify */
}

/* ---- hs ----------------------------------------------------------------- */

static long hs_count;
static void hs_up(conn_t *c) {
  hs_count++;
  conn_close(c, 1);
}

/* Starts one handshake: 1 if it failed at once. */
static int hs_begin(conn_t *c) {
  if (conn_start(c) != 0) return 1;
  int r = conn_handshake(c);
  if (r == 1) hs_up(c);
  if (r < 0) conn_close(c, 0);
  return r < 0;
}

static int hs_main(int conc, double secs) {
  conn_t *cs = calloc((size_t)conc, sizeof(*cs));
  for (int i = 0; i < conc; i++) cs[i].fd = -1;
  alarm((unsigned)secs + 30);
  if (resume) { /* the session every later handshake offers */
    conn_t first = {.fd = -1};
    if (establish(&first, 1, 1, 0, now() + 10, hs_up) != 0 || !saved) {
      printf("handshakes=0 resumed=0 errors=1 seconds=0 rate=0 proto=- cipher=- (no session to resume)\n");
      return 1;
    }
    hs_count = 0;
  }
  n_resumed = 0;
  double t0 = now(), end = t0 + secs;
  long errs = 0;
  struct epoll_event evs[256];
  for (int i = 0; i < conc; i++) errs += hs_begin(&cs[i]);
  while (now() < end) {
    int n = epoll_wait(ep, evs, 256, 20);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->state != S_HS) continue;
      int r = conn_handshake(c);
      if (r == 1) hs_up(c);
      else if (r < 0) conn_close(c, 0), errs++;
    }
    double t = now();
    for (int i = 0; i < conc; i++) {
      conn_t *c = &cs[i];
      if (c->state == S_HS) {
        if (t - c->t > 5.0) conn_close(c, 0), errs++;
        else DTLSv1_handle_timeout(c->ssl);
      }
      if (c->state == S_FREE && t < end) errs += hs_begin(c);
    }
  }
  double el = now() - t0;
  printf("handshakes=%ld resumed=%ld errors=%ld seconds=%.3f rate=%.1f proto=%s cipher=%s\n", hs_count, n_resumed,
         errs, el, hs_count / el, proto, cipher);
  return 0;
}

/* ---- dgram -------------------------------------------------------------- */

static void dgram_up(conn_t *c) { c->state = S_UP; }

static int dgram_main(long assocs, int window, int size, double secs) {
  conn_t *cs = calloc((size_t)assocs, sizeof(*cs));
  alarm((unsigned)(secs + assocs / 50 + 90));
  double t0 = now();
  long errs = establish(cs, assocs, 64, 0, t0 + 30 + assocs / 50.0, dgram_up);
  long up = 0;
  for (long i = 0; i < assocs; i++) up += cs[i].state == S_UP;
  printf("established=%ld errors=%ld seconds=%.3f\n", up, errs, now() - t0);
  fflush(stdout);
  if (up == 0) return 1;
  /* The ones that are up, packed. */
  long k = 0;
  for (long i = 0; i < assocs; i++)
    if (cs[i].state == S_UP) cs[k++] = cs[i];
  for (long i = 0; i < k; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
    epoll_ctl(ep, EPOLL_CTL_MOD, cs[i].fd, &ev);
  }
  usleep(500000);
  int cap = window / (int)(k < window ? k : window);
  long total = 0, lost = 0, rr = 0;
  double start = now(), end = start + secs, sweep = start + 0.25;
  /* Sends one datagram on the next association with room in its window. */
#define SEND_NEXT()                                                        \
  do {                                                                     \
    for (long tries = 0; tries < k; tries++) {                             \
      conn_t *d = &cs[rr];                                                 \
      if (++rr == k) rr = 0;                                               \
      if (d->inflight < cap) {                                             \
        if (conn_send(d, size) == 0) d->t = now(), inflight++;             \
        break;                                                             \
      }                                                                    \
    }                                                                      \
  } while (0)
  long inflight = 0;
  while (inflight < window) {
    long before = inflight;
    SEND_NEXT();
    if (inflight == before) break;
  }
  struct epoll_event evs[256];
  while (now() < end) {
    int n = epoll_wait(ep, evs, 256, 50);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      int r = conn_recv(c);
      if (r <= 0) continue;
      if (r > c->inflight) r = c->inflight;
      c->inflight -= r;
      inflight -= r;
      total += r;
      c->t = now();
      for (int j = 0; j < r; j++) SEND_NEXT();
    }
    double t = now();
    if (t >= sweep) {
      sweep = t + 0.25;
      for (long i = 0; i < k; i++)
        if (cs[i].inflight && t - cs[i].t > 1.0) {
          lost += cs[i].inflight;
          inflight -= cs[i].inflight;
          cs[i].inflight = 0;
        }
      while (inflight < window) {
        long before = inflight;
        SEND_NEXT();
        if (inflight == before) break;
      }
    }
  }
  double el = now() - start;
  printf("datagrams=%ld lost=%ld seconds=%.3f rate=%.1f associations=%ld proto=%s cipher=%s\n", total, lost, el,
         total / el, k, proto, cipher);
  return 0;
}

/* ---- relay (the baseline) ------------------------------------------------ */

typedef struct {
  uint64_t key; /* address << 16 | port, 0 = empty */
  int fd;
  double last;
} slot_t;

static slot_t *tab;
static size_t tab_size = 1 << 16; /* > 2x the fd limit: never full */

static size_t slot_of(uint64_t key) {
  size_t i = (size_t)((key * 0x9e3779b97f4a7c15ull) >> 48) & (tab_size - 1);
  while (tab[i].key && tab[i].key != key) i = (i + 1) & (tab_size - 1);
  return i;
}

static void tab_remove(size_t i) { /* backward-shift deletion keeps probes intact */
  size_t j = i;
  tab[i].key = 0;
  for (;;) {
    j = (j + 1) & (tab_size - 1);
    if (!tab[j].key) return;
    size_t h = (size_t)((tab[j].key * 0x9e3779b97f4a7c15ull) >> 48) & (tab_size - 1);
    if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
      tab[i] = tab[j];
      tab[j].key = 0;
      i = j;
    }
  }
}

static int relay_main(int argc, char **argv, double idle, double secs) {
  if (argc - optind != 2) usage();
  struct sockaddr_in la = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[optind]))};
  struct sockaddr_in ba = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[optind + 1]))};
  la.sin_addr.s_addr = ba.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int lfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int big = 4 << 20;
  setsockopt(lfd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
  if (bind(lfd, (struct sockaddr *)&la, sizeof(la)) != 0) {
    perror("fleet relay: bind");
    return 1;
  }
  tab = calloc(tab_size, sizeof(*tab));
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  enum { B = 64 };
  static char bufs[B][2048];
  struct mmsghdr msgs[B];
  struct iovec iov[B];
  struct sockaddr_in from[B];
  struct epoll_event evs[256];
  double end = now() + secs, sweep = now() + 1;
  printf("listening on 127.0.0.1:%s\n", argv[optind]);
  fflush(stdout);
  while (now() < end) {
    int n = epoll_wait(ep, evs, 256, 200);
    double t = now();
    for (int e = 0; e < n; e++) {
      if (evs[e].data.u64 == UINT64_MAX) {
        for (;;) {
          for (int i = 0; i < B; i++) {
            iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof(from[i]),
                                              .msg_iov = &iov[i], .msg_iovlen = 1};
          }
          int m = recvmmsg(lfd, msgs, B, MSG_DONTWAIT, NULL);
          if (m <= 0) break;
          for (int i = 0; i < m; i++) {
            uint64_t key = (uint64_t)ntohl(from[i].sin_addr.s_addr) << 16 | ntohs(from[i].sin_port);
            size_t s = slot_of(key);
            if (!tab[s].key) {
              int bfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
              if (bfd < 0) continue;
              if (connect(bfd, (struct sockaddr *)&ba, sizeof(ba)) != 0) {
                close(bfd);
                continue;
              }
              tab[s] = (slot_t){.key = key, .fd = bfd};
              struct epoll_event bev = {.events = EPOLLIN, .data.u64 = key};
              epoll_ctl(ep, EPOLL_CTL_ADD, bfd, &bev);
            }
            tab[s].last = t;
            send(tab[s].fd, bufs[i], msgs[i].msg_len, 0);
          }
          if (m < B) break;
        }
      } else {
        uint64_t key = evs[e].data.u64;
        size_t s = slot_of(key);
        if (!tab[s].key) continue;
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(key & 0xffff))};
        to.sin_addr.s_addr = htonl((uint32_t)(key >> 16));
        tab[s].last = t;
        for (;;) {
          ssize_t r = recv(tab[s].fd, bufs[0], sizeof(bufs[0]), 0);
          if (r < 0) break;
          sendto(lfd, bufs[0], (size_t)r, 0, (struct sockaddr *)&to, sizeof(to));
        }
      }
    }
    if (t >= sweep) {
      sweep = t + 1;
      for (size_t i = 0; i < tab_size; i++)
        while (tab[i].key && t - tab[i].last > idle) {
          close(tab[i].fd); /* also leaves the epoll set */
          tab_remove(i);
        }
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  const char *cmd = argv[1];
  long count = 1000, assocs = 1;
  int conc = 64, window = 64, size = 100, opt;
  double secs = 5, hold_secs = 120, idle = 60;
  optind = 2;
  while ((opt = getopt(argc, argv, "m:N:c:x:rd:a:w:s:i:")) != -1) {
    switch (opt) {
    case 'm': mode = parse_mode(optarg); break;
    case 'N': count = atol(optarg); break;
    case 'c': conc = atoi(optarg); break;
    case 'x': hold_secs = atof(optarg); break;
    case 'r': resume = 1; break;
    case 'd': secs = atof(optarg); break;
    case 'a': assocs = atol(optarg); break;
    case 'w': window = atoi(optarg); break;
    case 's': size = atoi(optarg); break;
    case 'i': idle = atof(optarg); break;
    default: usage();
    }
  }
  if (count < 1 || count > 19000 || assocs < 1 || assocs > 19000 || conc < 1 || conc > 4096 || window < 1 ||
      size < 1 || size > 1200)
    usage();
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  memset(payload, 'f', sizeof(payload));
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (!strcmp(cmd, "relay")) return relay_main(argc, argv, idle, hold_secs > 0 ? hold_secs : 600);
  parse_target(argc, argv);
  ctx_init();
  if (!strcmp(cmd, "hold")) return hold_main(count, conc, hold_secs);
  if (!strcmp(cmd, "hs")) return hs_main(conc, secs);
  if (!strcmp(cmd, "dgram")) return dgram_main(assocs, window, size, secs);
  usage();
  return 2;
}
