/* tlsload -- the tlsgate benchmark's own TLS client (tools/bench/run builds it).
 *
 * wrk (Debian 4.1.0) never offers a session ticket, so it cannot measure
 * resumed handshakes, and it cannot hold thousands of idle connections.
 * This small OpenSSL 3 client does both.
 *
 *   tlsload hs   [-r] [-t PROCS] [-d SECONDS] [-n MAXCOUNT] HOST PORT PATH
 *       Each of PROCS client processes (default 16) loops: TCP connect, TLS handshake (with -r: offering the
 *       newest session ticket that process received), one HTTP/1.1 GET PATH
 *       with "Connection: close", read the response (Content-Length), close.
 *       Bounded by time (-d, default 5) and count (-n, default 10,000,000).
 *       Prints one line:
 *         handshakes=N resumed=R errors=E seconds=S rate=N/S
 *         proto=TLSv1.3 cipher=... group=...
 *
 *   tlsload hold [-N COUNT] [-t THREADS] [-x SECONDS] HOST PORT PATH
 *       Opens COUNT TLS connections, sends one keep-alive GET PATH on each
 *       and reads the response (so every proxy has its backend connection
 *       and has relayed data once), then holds them all idle.  Prints
 *       "held N errors E" once all are up, then waits until its standard
 *       input closes (or -x SECONDS, default 120, pass) and exits.
 *
 *   tlsload dtls ... / tlsload udpecho ...   (figure 6, DTLS datagrams/s;
 *       see dtls_main and udpecho_main below)
 *
 * The client forces what every browser of today offers first and what the
 * benchmark compares: TLS 1.3, X25519 key share, TLS_AES_128_GCM_SHA256.
 * Certificates are not verified (the CertificateVerify signature still is:
 * TLS 1.3 requires it), exactly like wrk.
 */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static SSL_CTX *ctx;
static struct sockaddr_in addr;
static char request[512];
static size_t request_len;
static double deadline;
static long max_count = 10000000;
static int resume;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long total_hs, total_resumed, total_errors, issued; /* issued: hs mode, per process */
static char proto[32] = "-", cipher[64] = "-", group[32] = "-";

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int tcp_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  /* A stalled server must not hang a blocking client beyond its bounds. */
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads one HTTP/1.1 response (headers + Content-Length body). 0 = ok. */
static int read_response(SSL *ssl) {
  char buf[16384];
  size_t have = 0;
  long body_left = -1;
  for (;;) {
    int n = SSL_read(ssl, buf + have, (int)(sizeof(buf) - have));
    if (n <= 0) return -1;
    have += (size_t)n;
    if (body_left < 0) {
      buf[have < sizeof(buf) ? have : sizeof(buf) - 1] = '\0';
      char *end = strstr(buf, "\r\n\r\n");
      if (!end) {
        if (have == sizeof(buf)) return -1;
        continue;
      }
      char *cl = strcasestr(buf, "\r\ncontent-length:");
      if (!cl || cl > end) return -1;
      long len = strtol(cl + 17, NULL, 10);
      size_t head = (size_t)(end + 4 - buf);
      body_left = len - (long)(have - head);
    } else {
      body_left -= n;
    }
    if (body_left <= 0) return 0;
    have = 0; /* body bytes are not kept */
  }
}

static void note_params(SSL *ssl) {
  pthread_mutex_lock(&lock);
  if (proto[0] == '-') {
    snprintf(proto, sizeof(proto), "%s", SSL_get_version(ssl));
    snprintf(cipher, sizeof(cipher), "%s", SSL_get_cipher_name(ssl));
    const char *g = SSL_group_to_name(ssl, SSL_get_negotiated_group(ssl));
    snprintf(group, sizeof(group), "%s", g ? g : "?");
  }
  pthread_mutex_unlock(&lock);
}

/* The newest ticket of this thread (TLS 1.3 tickets arrive after the
 * handshake, so they are caught by the new-session callback). */
static __thread SSL_SESSION *my_session;
static int new_session_cb(SSL *ssl, SSL_SESSION *sess) {
  (void)ssl;
  if (my_session) SSL_SESSION_free(my_session);
  my_session = sess;
  return 1; /* we keep the reference */
}

/* One client process of hs mode: a sequential loop (OpenSSL 3.0 clients
 * scale badly across threads of one process -- global locks -- so hs mode
 * forks processes instead, like wrk's independent threads). */
static void *hs_loop(void *arg) {
  (void)arg;
  long hs = 0, res = 0, err = 0;
  while (now() < deadline) {
    if (issued++ >= max_count) break;
    int fd = tcp_connect();
    if (fd < 0) {
      err++;
      usleep(1000);
      continue;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (resume && my_session) SSL_set_session(ssl, my_session);
    int ok = SSL_connect(ssl) == 1 &&
             SSL_write(ssl, request, (int)request_len) == (int)request_len &&
             read_response(ssl) == 0;
    if (ok) {
      hs++;
      if (SSL_session_reused(ssl)) res++;
      if (hs == 1) note_params(ssl);
    } else {
      err++;
      ERR_clear_error();
    }
    /* No close_notify is sent (like wrk, just close), but the connection
     * is marked as shut down: SSL_free of a connection that was not would
     * mark its session -- the newest ticket -- as not resumable. */
    SSL_set_quiet_shutdown(ssl, 1);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
  }
  total_hs += hs;
  total_resumed += res;
  total_errors += err;
  if (my_session) SSL_SESSION_free(my_session);
  return NULL;
}

/* hold mode */
static long hold_count;
static long hold_next;
static SSL **held;
static int *held_fd;

static void *hold_thread(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&lock);
    long i = hold_next < hold_count ? hold_next++ : -1;
    pthread_mutex_unlock(&lock);
    if (i < 0 || now() > deadline) break;
    int fd = tcp_connect();
    SSL *ssl = fd >= 0 ? SSL_new(ctx) : NULL;
    int ok = 0;
    if (ssl) {
      SSL_set_fd(ssl, fd);
      ok = SSL_connect(ssl) == 1 &&
           SSL_write(ssl, request, (int)request_len) == (int)request_len &&
           read_response(ssl) == 0;
      if (ok) note_params(ssl);
    }
    if (!ok) {
      if (ssl) SSL_free(ssl);
      if (fd >= 0) close(fd);
      ERR_clear_error();
      pthread_mutex_lock(&lock);
      total_errors++;
      pthread_mutex_unlock(&lock);
      continue;
    }
    held[i] = ssl;
    held_fd[i] = fd;
    pthread_mutex_lock(&lock);
    total_hs++;
    pthread_mutex_unlock(&lock);
  }
  return NULL;
}

static void usage(void) {
  fprintf(stderr,
          "usage: tlsload hs [-r] [-t PROCS] [-d SECONDS] [-n MAX] HOST PORT PATH\n"
          "       tlsload hold [-N COUNT] [-t THREADS] [-x SECONDS] HOST PORT PATH\n"
          "       tlsload dtls [-p] [-t PROCS] [-d SECONDS] [-w WINDOW] [-s SIZE] HOST PORT\n"
          "       tlsload udpecho [-x SECONDS] PORT\n");
  exit(2);
}


/* ---- DTLS (figure 6) ------------------------------------------------------ */

/* tlsload udpecho [-x SECONDS] PORT: a UDP echo server on 127.0.0.1:PORT,
 * the plaintext backend of the DTLS figure.  recvmmsg/sendmmsg in batches;
 * exits after SECONDS (default 600) or on SIGTERM. */
static int udpecho_main(int argc, char **argv) {
  double secs = 600;
  int opt;
  optind = 2;
  while ((opt = getopt(argc, argv, "x:")) != -1) {
    if (opt == 'x') secs = atof(optarg);
    else usage();
  }
  if (argc - optind != 1) usage();
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[optind]))};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int big = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    perror("udpecho: bind");
    return 1;
  }
  printf("listening on 127.0.0.1:%s\n", argv[optind]);
  fflush(stdout);
  enum { B = 64 };
  static char bufs[B][2048];
  struct mmsghdr msgs[B];
  struct iovec iov[B];
  struct sockaddr_in from[B];
  double end = now() + secs;
  struct timeval tv = {.tv_sec = 1};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  while (now() < end) {
    for (int i = 0; i < B; i++) {
      iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
      msgs[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof(from[i]),
                                        .msg_iov = &iov[i], .msg_iovlen = 1};
    }
    int n = recvmmsg(fd, msgs, B, MSG_WAITFORONE, NULL);
    if (n <= 0) continue;
    for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
    sendmmsg(fd, msgs, (unsigned)n, 0);
  }
  return 0;
}

/* tlsload dtls [-t PROCS] [-d SECONDS] [-w WINDOW] [-s SIZE] HOST PORT:
 * PROCS client processes (default 8), each one DTLS 1.2 association over a
 * connected UDP socket; after the handshake each sends WINDOW (default 8)
 * datagrams of SIZE bytes (default 100), reads their echoes (200 ms
 * timeout per read: a lost datagram is counted, not retried), and repeats
 * for SECONDS.  Prints:
 *   datagrams=N lost=L handshakes=H errors=E seconds=S rate=N/S proto=... cipher=...
 * where N counts echoed datagrams (each one client -> proxy -> backend ->
 * proxy -> client round trip: 4 datagrams through the proxy).
 * With -p the same windowed echo runs over plain UDP (no DTLS), for the
 * relay's own datagram rate. */
static long plain_assoc(int fd, double end, int window, int size, long *lost) {
  struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char out[2048], in[2048];
  memset(out, 'u', sizeof(out));
  long n = 0;
  while (now() < end) {
    int sent = 0;
    for (int i = 0; i < window; i++)
      if (send(fd, out, (size_t)size, 0) == size) sent++;
    for (int i = 0; i < sent; i++) {
      if (recv(fd, in, sizeof(in), 0) > 0) {
        n++;
      } else {
        *lost += sent - i;
        break;
      }
    }
  }
  close(fd);
  return n;
}

static int plain_mode;

static long dtls_assoc(const char *host, int port, double end, int window, int size,
                       long *lost, char *params, size_t psize) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) return -1;
  if (plain_mode) {
    snprintf(params, psize, "udp plain");
    return plain_assoc(fd, end, window, size, lost);
  }
  SSL_CTX *dctx = SSL_CTX_new(DTLS_client_method());
  SSL_CTX_set_min_proto_version(dctx, DTLS1_2_VERSION);
  /* DTLS 1.2: the ECDSA P-256 certificate needs P-256 in the list. */
  SSL_CTX_set1_groups_list(dctx, "X25519:P-256");
  /* Same record protection as the TLS figures, whatever the server prefers. */
  SSL_CTX_set_cipher_list(dctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256");
  SSL_CTX_set_verify(dctx, SSL_VERIFY_NONE, NULL);
  SSL *ssl = SSL_new(dctx);
  BIO *bio = BIO_new_dgram(fd, BIO_NOCLOSE);
  BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, &a);
  SSL_set_bio(ssl, bio, bio);
  SSL_set_mtu(ssl, 1400);
  SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
  long n = -1;
  if (SSL_connect(ssl) == 1) {
    snprintf(params, psize, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_RECV_TIMEOUT, 0, &tv);
    char out[2048], in[2048];
    memset(out, 'd', sizeof(out));
    n = 0;
    while (now() < end) {
      int sent = 0;
      for (int i = 0; i < window; i++)
        if (SSL_write(ssl, out, size) == size) sent++;
      for (int i = 0; i < sent; i++) {
        int r = SSL_read(ssl, in, sizeof(in));
        if (r > 0) {
          n++;
        } else {
          *lost += sent - i; /* timed out: the rest of this window is lost */
          ERR_clear_error();
          break;
        }
      }
    }
  }
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(dctx);
  close(fd);
  return n;
}

static int dtls_main(int argc, char **argv) {
  int procs = 8, window = 8, size = 100, opt;
  double secs = 5;
  optind = 2;
  while ((opt = getopt(argc, argv, "t:d:w:s:p")) != -1) {
    switch (opt) {
    case 'p': plain_mode = 1; break;
    case 't': procs = atoi(optarg); break;
    case 'd': secs = atof(optarg); break;
    case 'w': window = atoi(optarg); break;
    case 's': size = atoi(optarg); break;
    default: usage();
    }
  }
  if (argc - optind != 2 || procs < 1 || procs > 256 || window < 1 || size < 1 || size > 1200)
    usage();
  const char *host = argv[optind];
  int port = atoi(argv[optind + 1]);
  signal(SIGPIPE, SIG_IGN);
  int pfd[2];
  if (pipe(pfd) != 0) return 1;
  double t0 = now(), end = t0 + secs;
  for (int i = 0; i < procs; i++) {
    if (fork() == 0) {
      close(pfd[0]);
      alarm((unsigned)secs + 20); /* hard bound, whatever the server does */
      long lost = 0;
      char params[128] = "- -";
      long n = dtls_assoc(host, port, end, window, size, &lost, params, sizeof(params));
      char line[256];
      int len = snprintf(line, sizeof(line), "%ld %ld %s\n", n, lost, params);
      if (write(pfd[1], line, (size_t)len) != len) _exit(1);
      _exit(0);
    }
  }
  close(pfd[1]);
  FILE *in = fdopen(pfd[0], "r");
  long n, l, total = 0, lost = 0, hs = 0, errs = 0;
  char p1[32], p2[64];
  while (fscanf(in, "%ld %ld %31s %63s", &n, &l, p1, p2) == 4) {
    if (n < 0) {
      errs++;
      continue;
    }
    hs++;
    total += n;
    lost += l;
    if (proto[0] == '-' && p1[0] != '-') {
      snprintf(proto, sizeof(proto), "%s", p1);
      snprintf(cipher, sizeof(cipher), "%s", p2);
    }
  }
  while (wait(NULL) > 0) {
  }
  errs += procs - hs - errs; /* children that never reported (hard bound hit) */
  double el = now() - t0;
  printf("datagrams=%ld lost=%ld handshakes=%ld errors=%ld seconds=%.3f rate=%.1f proto=%s cipher=%s\n",
         total, lost, hs, errs, el, total / el, proto, cipher);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  const char *mode = argv[1];
  if (strcmp(mode, "udpecho") == 0) return udpecho_main(argc, argv);
  if (strcmp(mode, "dtls") == 0) return dtls_main(argc, argv);
  int hold = strcmp(mode, "hold") == 0;
  if (!hold && strcmp(mode, "hs") != 0) usage();
  int threads = hold ? 4 : 16, opt;
  double seconds = 5, hold_secs = 120;
  hold_count = 1000;
  optind = 2;
  while ((opt = getopt(argc, argv, "rt:d:n:N:x:")) != -1) {
    switch (opt) {
    case 'r': resume = 1; break;
    case 't': threads = atoi(optarg); break;
    case 'd': seconds = atof(optarg); break;
    case 'n': max_count = atol(optarg); break;
    case 'N': hold_count = atol(optarg); break;
    case 'x': hold_secs = atof(optarg); break;
    default: usage();
    }
  }
  if (argc - optind != 3 || threads < 1 || threads > 1024) usage();
  const char *host = argv[optind], *path = argv[optind + 2];
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) usage();
  request_len = (size_t)snprintf(request, sizeof(request),
                                 "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: %s\r\n\r\n",
                                 path, host, hold ? "keep-alive" : "close");
  signal(SIGPIPE, SIG_IGN);

  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");
  SSL_CTX_set1_groups_list(ctx, "X25519");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, new_session_cb);

  pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
  double t0 = now();
  if (hold) {
    held = calloc((size_t)hold_count, sizeof(*held));
    held_fd = calloc((size_t)hold_count, sizeof(*held_fd));
    deadline = t0 + hold_secs; /* also bounds the opening phase */
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, hold_thread, NULL);
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    printf("held %ld errors %ld seconds %.2f proto=%s cipher=%s group=%s\n", total_hs,
           total_errors, now() - t0, proto, cipher, group);
    fflush(stdout);
    /* Idle until stdin closes or the time bound passes. */
    struct pollfd p = {.fd = 0, .events = POLLIN};
    char c;
    while (now() < deadline) {
      int ms = (int)((deadline - now()) * 1000) + 1;
      if (poll(&p, 1, ms) > 0 && read(0, &c, 1) <= 0) break;
    }
    for (long i = 0; i < hold_count; i++)
      if (held[i]) {
        SSL_free(held[i]);
        close(held_fd[i]);
      }
    return 0;
  }
  deadline = t0 + seconds;
  /* -t processes, each with max_count / procs connections at most; each
   * writes "hs res err" and its first connection's parameters to a pipe. */
  int pfd[2];
  if (pipe(pfd) != 0) return 1;
  long share = (max_count + threads - 1) / threads;
  for (int i = 0; i < threads; i++) {
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      close(pfd[0]);
      alarm((unsigned)seconds + 20); /* hard bound, whatever the server does */
      max_count = share;
      hs_loop(NULL);
      char line[256];
      int n = snprintf(line, sizeof(line), "%ld %ld %ld %s %s %s\n", total_hs,
                       total_resumed, total_errors, proto, cipher, group);
      if (write(pfd[1], line, (size_t)n) != n) _exit(1);
      _exit(0);
    }
  }
  close(pfd[1]);
  FILE *in = fdopen(pfd[0], "r");
  long a, b, c;
  char p1[32], p2[64], p3[32];
  total_hs = total_resumed = total_errors = 0;
  while (fscanf(in, "%ld %ld %ld %31s %63s %31s", &a, &b, &c, p1, p2, p3) == 6) {
    total_hs += a;
    total_resumed += b;
    total_errors += c;
    if (proto[0] == '-' && p1[0] != '-') {
      snprintf(proto, sizeof(proto), "%s", p1);
      snprintf(cipher, sizeof(cipher), "%s", p2);
      snprintf(group, sizeof(group), "%s", p3);
    }
  }
  while (wait(NULL) > 0) {
  }
  double el = now() - t0;
  printf("handshakes=%ld resumed=%ld errors=%ld seconds=%.3f rate=%.1f proto=%s cipher=%s group=%s\n",
         total_hs, total_resumed, total_errors, el, total_hs / el, proto, cipher, group);
  return 0;
}
