/* The UDP listener (dtls.h): per worker the listening socket of each
 * `transport = udp` listener.  It classifies every datagram (dtls_cookie.c),
 * answers or drops what must not cost state, admits new clients under the
 * caps (udp_caps.c) and routes the rest through its association table
 * (assoc_table.c) to the association (udp_assoc.c).  Calls go one way:
 * listener -> table -> association; an association never calls back into
 * the listener (it sends through udp_send.c). */
#include "dtls.h"

#include <fcntl.h>
#include <linux/sock_diag.h> /* SK_MEMINFO_DROPS */
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "assoc_table.h"
#include "metrics.h"
#include "tls_compat.h"
#include "udp_assoc.h"
#include "udp_caps.h"
#include "udp_send.h"

/* Two lines (a log line holds about 1 KiB): traffic and associations,
 * then everything dropped. */
static void log_stats(tg_udp_listener_t *ul) {
  const tg_udp_stats_t *s = &ul->st;
  const char *name = ul->svc->conf->name;
  int wi = ul->w->index;
  tg_log(TG_LOG_INFO,
         "listener %s (worker %d): udp stats: from clients %llu datagrams / "
         "%llu bytes, to clients %llu datagrams / %llu bytes, hello-verify %llu "
         "(%llu held back), cookies ok %llu bad %llu, to backends %llu datagrams, from backends "
         "%llu; associations open %zu, created %llu, peak %llu, half-open peak "
         "%llu; handshakes ok %llu, failed %llu, timed out %llu, restarted %llu",
         name, wi, (unsigned long long)s->dgrams_in,
         (unsigned long long)s->bytes_in, (unsigned long long)s->dgrams_out,
         (unsigned long long)s->bytes_out, (unsigned long long)s->hvr_sent,
         (unsigned long long)s->hvr_limited, (unsigned long long)s->cookie_ok, (unsigned long long)s->cookie_bad,
         (unsigned long long)s->backend_dgrams_out,
         (unsigned long long)s->backend_dgrams_in, ul->table.nassoc,
         (unsigned long long)ul->table.created, (unsigned long long)ul->table.peak,
         (unsigned long long)s->half_open_peak, (unsigned long long)s->hs_ok,
         (unsigned long long)s->hs_failed, (unsigned long long)s->hs_timeout,
         (unsigned long long)s->restarted);
  tg_log(TG_LOG_INFO,
         "listener %s (worker %d): udp drops: short %llu, not-dtls %llu, "
         "not-hello %llu, truncated %llu, half-open cap %llu total / %llu per "
         "address, max_connections %llu, draining %llu, send queue %llu, held "
         "queue %llu, too large %llu, send errors %llu, evicted %llu, "
         "amplification-limited %llu, associations per source %llu, process "
         "cap %llu, local errors %llu, kernel (receive buffer full) %llu",
         name, wi, (unsigned long long)s->drop_short,
         (unsigned long long)s->drop_garbage,
         (unsigned long long)s->drop_not_hello,
         (unsigned long long)s->drop_truncated,
         (unsigned long long)s->drop_half_open_total,
         (unsigned long long)s->drop_half_open_addr,
         (unsigned long long)s->drop_max_conn,
         (unsigned long long)s->drop_draining, (unsigned long long)s->drop_sendq,
         (unsigned long long)s->drop_queue, (unsigned long long)s->too_large,
         (unsigned long long)s->send_errors, (unsigned long long)s->evicted,
         (unsigned long long)s->amp_held,
         (unsigned long long)s->drop_assoc_source,
         (unsigned long long)s->drop_assoc_total,
         (unsigned long long)s->local_errors, (unsigned long long)s->kernel_drops);
}

static void on_socket_closed(uv_handle_t *h) {
  tg_udp_listener_t *ul = h->data;
  log_stats(ul);
  tg_udp_listener_t **pp = &ul->w->udp_listeners;
  while (*pp && *pp != ul) pp = &(*pp)->next;
  if (*pp) *pp = ul->next;
  tg_runtime_unref(ul->rt);
  tg_udp_caps_local_free(ul);
  tg_assoc_table_free(&ul->table);
  free(ul->mmsgbuf);
  ul->magic = 0;
  free(ul);
}

static void count_kernel_drops(tg_udp_listener_t *ul);

static void close_socket(tg_udp_listener_t *ul) {
  if (ul->closing) return;
  count_kernel_drops(ul);
  ul->closing = 1;
  uv_close((uv_handle_t *)&ul->udp, on_socket_closed);
}

/* The last association's memory is gone: a draining listener closes. */
static void on_last_freed(tg_assoc_table_t *t) {
  tg_udp_listener_t *ul = t->owner;
  if (ul->draining) close_socket(ul);
}

/* One buffer for a whole recvmmsg batch: libuv cuts it into
 * TG_UDP_RECV_BUF chunks, calls on_recv with UV_UDP_MMSG_CHUNK for each
 * datagram and last with UV_UDP_MMSG_FREE (nothing to free: the listener
 * owns it). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tg_udp_listener_t *ul = h->data;
  if (ul->mmsgbuf) {
    buf->base = (char *)ul->mmsgbuf;
    buf->len = (size_t)TG_UDP_MMSG_CHUNKS * TG_UDP_RECV_BUF;
  } else {
    buf->base = (char *)ul->recvbuf;
    buf->len = sizeof(ul->recvbuf);
  }
}

/* The kernel's count of datagrams dropped on the listening socket
 * (SO_MEMINFO; 0 where the kernel does not say). */
static uint32_t kernel_drops(tg_udp_listener_t *ul) {
  uv_os_fd_t fd;
  uint32_t mi[SK_MEMINFO_VARS] = {0};
  socklen_t len = sizeof(mi);
  if (uv_fileno((uv_handle_t *)&ul->udp, &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) != 0 ||
      len <= SK_MEMINFO_DROPS * sizeof(uint32_t))
    return ul->drops_seen;
  return mi[SK_MEMINFO_DROPS];
}

/* Adds the drops since the last look to the stats and the metric.  A
 * draining listener leaves it to its successor on the same socket. */
static void count_kernel_drops(tg_udp_listener_t *ul) {
  if (ul->draining || ul->closing) return;
  ul->drops_read_ms = uv_now(ul->udp.loop);
  uint32_t now = kernel_drops(ul), delta = now - ul->drops_seen;
  ul->drops_seen = now;
  if (!delta) return;
  ul->st.kernel_drops += delta;
  atomic_fetch_add_explicit(&ul->svc->stats->udp_kernel_drops, delta,
                            memory_order_relaxed);
}

/* Room for bursts (handshakes, devices waking together): SO_RCVBUFFORCE
 * when privileged, else SO_RCVBUF up to net.core.rmem_max.  Says what it
 * got once per listener. */
static void size_receive_buffer(tg_udp_listener_t *ul, int fd) {
  int want = TG_UDP_RCVBUF, got = 0;
  socklen_t len = sizeof(got);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) != 0) return;
  if (ul->w->index != 0) return;
  got /= 2; /* Linux reports twice what it accounts for the payload */
  if (got < want)
    tg_log(TG_LOG_WARN, "listener %s: receive buffer %d KiB (asked for %d KiB; "
           "raise net.core.rmem_max, or run with CAP_NET_ADMIN): a burst "
           "beyond it is dropped by the kernel (tlsgate_udp_kernel_drops_total)",
           ul->svc->conf->name, got / 1024, want / 1024);
  else
    tg_log(TG_LOG_INFO, "listener %s: receive buffer %d KiB", ul->svc->conf->name,
           got / 1024);
}

static void send_hvr(tg_udp_listener_t *ul, const struct sockaddr *to,
                     const tg_dgram_info_t *info) {
  uint8_t cookie[TG_COOKIE_LEN], out[TG_HVR_LEN];
  if (tg_cookie_make(&ul->ds->keys, tg_now_ms(), to, cookie) != 0) return;
  size_t n = tg_dtls_build_hvr(info, cookie, sizeof(cookie), out, sizeof(out));
  if (n && tg_udp_send_client(ul, to, out, n) == 0) {
    ul->st.hvr_sent++;
    atomic_fetch_add_explicit(&ul->svc->stats->dtls_hello_verify, 1, memory_order_relaxed);
  }
}

static void drop(tg_udp_listener_t *ul, const struct sockaddr *from,
                 const char *why, uint64_t *counter) {
  (*counter)++;
  atomic_fetch_add_explicit(&ul->svc->stats->udp_dropped, 1, memory_order_relaxed);
  if (tg_log_enabled(TG_LOG_DEBUG) && tg_udp_rate_ok(ul, RL_DROP)) {
    char peer[64];
    tg_format_peer(from, peer, sizeof(peer));
    tg_log(TG_LOG_DEBUG, "listener %s: dropped a datagram from %s: %s "
           "(%llu such so far; at most one line a second)",
           ul->svc->conf->name, peer, why, (unsigned long long)*counter);
  }
}

static int over_max_connections(tg_udp_listener_t *ul, const struct sockaddr *from) {
  int max = ul->rt->cfg->max_connections;
  if (max <= 0 || atomic_load(&tg_active_connections) < max) return 0;
  ul->st.drop_max_conn++;
  atomic_fetch_add(&ul->svc->stats->rejected_max, 1);
  if (tg_udp_rate_ok(ul, RL_MAX_CONN)) {
    char peer[64];
    tg_format_peer(from, peer, sizeof(peer));
    tg_log(TG_LOG_WARN, "listener %s: max_connections (%d) reached: ignoring "
           "new client %s (%llu so far)", ul->svc->conf->name, max, peer,
           (unsigned long long)ul->st.drop_max_conn);
  }
  return 1;
}

/* Admits one more association from sa (udp_caps.h); makes room first by
 * evicting when the half-open total is reached.  NULL, or the cap. */
static const char *admit(tg_udp_listener_t *ul, const struct sockaddr *sa,
                         int half_open) {
  tg_udp_assoc_t *victim = half_open ? tg_udp_caps_victim(ul, sa) : NULL;
  if (victim)
    tg_assoc_close(victim, TG_LOG_DEBUG, 0, "evicted: max_half_open "
                   "(%d) reached; the oldest half-open handshake of the "
                   "busiest source makes room", ul->ds->max_half_open);
  return tg_udp_caps_admit(ul, sa, half_open);
}

/* A ClientHello that starts a new association (its cookie, if any, is
 * verified).  With a predecessor, the new handshake is its successor. */
static void new_dtls_assoc(tg_udp_listener_t *ul, const struct sockaddr *from,
                           uint64_t hash, const uint8_t *p, size_t n,
                           const tg_dgram_info_t *info, int cookie_checked,
                           tg_udp_assoc_t *predecessor) {
  if (over_max_connections(ul, from)) return;
  /* At most one parallel handshake per peer: a newer one replaces it. */
  if (predecessor && predecessor->successor)
    tg_assoc_close(predecessor->successor, TG_LOG_INFO, 0,
                   "replaced by a newer ClientHello from the same address and port");
  const char *cap = admit(ul, from, 1);
  if (cap) {
    if (strcmp(cap, "associations per source") != 0 &&
        tg_udp_rate_ok(ul, RL_HALF_OPEN)) {
      char peer[64];
      tg_format_peer(from, peer, sizeof(peer));
      tg_log(TG_LOG_WARN, "listener %s: half-open DTLS handshakes at the %s "
             "cap (max_half_open = %d, max_half_open_per_source = %d): "
             "ignoring ClientHello from %s (%llu + %llu so far, %llu evicted)",
             ul->svc->conf->name, cap, ul->ds->max_half_open,
             ul->ds->max_half_open_per_source, peer,
             (unsigned long long)ul->st.drop_half_open_total,
             (unsigned long long)ul->st.drop_half_open_addr,
             (unsigned long long)ul->st.evicted);
    }
    return;
  }
  if (predecessor && predecessor->s.state == TG_ASSOC_CLOSING) predecessor = NULL;
  tg_udp_assoc_t *a = tg_assoc_new(ul, from, hash, predecessor);
  if (!a) {
    tg_udp_caps_undo(ul, from, 1);
    return;
  }
  tg_udp_caps_admitted(ul, a, 1);
  memcpy(a->hello_random, info->random, sizeof(a->hello_random));
  tg_assoc_start_dtls(a, p, n, cookie_checked);
}

/* Records for a known peer.  While a new handshake from it is pending,
 * epoch 0 belongs to the new one and later epochs are offered to both:
 * each session silently drops what it cannot decrypt. */
static void route_records(tg_udp_assoc_t *a, const uint8_t *p, size_t n,
                          const tg_dgram_info_t *info, tg_dgram_kind_t kind) {
  tg_udp_assoc_t *s = a->successor;
  if (!s || kind != TG_DGRAM_RECORD) {
    tg_assoc_client_datagram(a, p, n);
    return;
  }
  if (info->epoch != 0) tg_assoc_client_datagram(a, p, n);
  /* a may have closed and handed the peer to s: s is still valid memory
   * (freed only after its handles close) and ignores datagrams once closing */
  tg_assoc_client_datagram(s, p, n);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *from, unsigned flags) {
  tg_udp_listener_t *ul = h->data;
  if (uv_now(h->loop) - ul->drops_read_ms >= 1000) count_kernel_drops(ul);
  if (nread == 0 || !from) return; /* nothing more to read now, or batch end */
  if (nread < 0) {
    if (tg_udp_rate_ok(ul, RL_RECV_ERROR))
      tg_log(TG_LOG_WARN, "listener %s: receive failed: %s", ul->svc->conf->name,
             uv_strerror((int)nread));
    return;
  }
  if (from->sa_family != AF_INET && from->sa_family != AF_INET6) return;
  const uint8_t *p = (const uint8_t *)buf->base;
  size_t n = (size_t)nread;
  ul->st.dgrams_in++;
  ul->st.bytes_in += n;
  if (flags & UV_UDP_PARTIAL) {
    drop(ul, from, "larger than the receive buffer", &ul->st.drop_truncated);
    return;
  }
  uint64_t hash = tg_assoc_table_hash(&ul->table, from);
  tg_udp_assoc_t *a = tg_assoc_table_lookup(&ul->table, from, hash);
  if (a && !a->ssl) { /* a plain relay association (secure = off) */
    tg_assoc_client_datagram(a, p, n);
    return;
  }
  if (!a && !ul->svc->server_ctx) {
    if (ul->draining) {
      drop(ul, from, "new client while draining", &ul->st.drop_draining);
      return;
    }
    if (over_max_connections(ul, from)) return;
    if (admit(ul, from, 0)) return;
    if (tg_udp_total_reserve(ul, from) != 0) {
      tg_udp_caps_undo(ul, from, 0);
      return;
    }
    a = tg_assoc_new(ul, from, hash, NULL);
    if (!a) {
      tg_udp_caps_undo(ul, from, 0);
      tg_udp_total_unreserve();
      return;
    }
    tg_udp_caps_admitted(ul, a, 0);
    a->total_counted = 1;
    tg_assoc_start_plain(a, p, n);
    return;
  }

  tg_dgram_info_t info;
  tg_dgram_kind_t kind = tg_dgram_classify(p, n, &info);
  if (a) {
    if (kind != TG_DGRAM_CLIENT_HELLO) {
      route_records(a, p, n, &info, kind);
      return;
    }
    /* A retransmitted ClientHello (see tg_assoc_hello_again). */
    if (memcmp(info.random, a->hello_random, sizeof(a->hello_random)) == 0) {
      tg_assoc_hello_again(a, p, n);
      return;
    }
    if (a->successor && memcmp(info.random, a->successor->hello_random,
                               sizeof(a->hello_random)) == 0) {
      tg_assoc_hello_again(a->successor, p, n);
      return;
    }
    /* Otherwise the peer starts over (or someone says so in its name). */
  }
  switch (kind) {
  case TG_DGRAM_SHORT:
    drop(ul, from, "too short for DTLS", &ul->st.drop_short);
    return;
  case TG_DGRAM_GARBAGE:
    drop(ul, from, "not DTLS", &ul->st.drop_garbage);
    return;
  case TG_DGRAM_RECORD:
    drop(ul, from, "not a ClientHello from an unknown peer", &ul->st.drop_not_hello);
    return;
  case TG_DGRAM_CLIENT_HELLO:
    break;
  }
  if (ul->draining) {
    drop(ul, from, "new handshake while draining", &ul->st.drop_draining);
    return;
  }
  /* Answering must never send more than we got. */
  if (n < TG_HVR_LEN) {
    drop(ul, from, "ClientHello smaller than a HelloVerifyRequest", &ul->st.drop_short);
    return;
  }
  if (ul->ds->cookies) {
    if (info.cookie_len == 0 ||
        !tg_cookie_valid(&ul->ds->keys, tg_now_ms(), from, info.cookie,
                         info.cookie_len)) {
      if (info.cookie_len) {
        ul->st.cookie_bad++;
        atomic_fetch_add_explicit(&ul->svc->stats->dtls_cookie_bad, 1, memory_order_relaxed);
      }
      if (a) {
        /* RFC 6347 4.2.8: keep the association until the peer proves it
         * is there; at most one HelloVerifyRequest a second towards it. */
        uint64_t now = uv_now(&ul->w->loop);
        if (a->s.state != TG_ASSOC_HANDSHAKE) {
          /* An established peer is not sent a HelloVerifyRequest for one
           * ClientHello in its name (a live client stalls on it): only
           * when the same ClientHello comes again TG_SUCCESSOR_WAIT_MS or
           * more later -- a rebooted client's retransmission -- and the
           * session has not heard from the peer since. */
          if (a->hvr_first_ms == 0 ||
              memcmp(info.random, a->hvr_random, sizeof(a->hvr_random)) != 0) {
            memcpy(a->hvr_random, info.random, sizeof(a->hvr_random));
            a->hvr_first_ms = now;
            ul->st.hvr_limited++;
            return;
          }
          if (now - a->hvr_first_ms < TG_SUCCESSOR_WAIT_MS ||
              a->peer_auth_ms >= a->hvr_first_ms) {
            ul->st.hvr_limited++;
            return;
          }
        }
        if (a->last_hvr_ms && now - a->last_hvr_ms < 1000) {
          ul->st.hvr_limited++;
          return;
        }
        a->last_hvr_ms = now;
      }
      send_hvr(ul, from, &info);
      return;
    }
    ul->st.cookie_ok++;
    atomic_fetch_add_explicit(&ul->svc->stats->dtls_cookie_ok, 1, memory_order_relaxed);
    if (a && a->s.state == TG_ASSOC_HANDSHAKE) {
      ul->st.restarted++;
      tg_assoc_close(a, TG_LOG_INFO, 0, "client started a new handshake from "
                     "the same address and port (cookie verified)");
      a = NULL;
    }
    /* An established association stays until the new handshake completes:
     * a cookie shows the sender receives at that address, not that it is
     * the peer. */
    new_dtls_assoc(ul, from, hash, p, n, &info, 1, a);
    return;
  }
  if (a && a->s.state == TG_ASSOC_HANDSHAKE) {
    /* Nothing established to protect: start over at once. */
    ul->st.restarted++;
    tg_assoc_close(a, TG_LOG_INFO, 0,
                   "client started a new handshake from the same address and port");
    a = NULL;
  }
  new_dtls_assoc(ul, from, hash, p, n, &info, 0, a);
}

static void warn_cookies_off(const tg_service_t *s) {
  const tg_listener_conf_t *c = s->conf;
  const struct tg_dtls_svc *d = s->dtls;
  tg_log(TG_LOG_INFO, "listener %s: udp caps: %d associations per source%s, "
         "%ld in the process (derived from the fd limit)%s", c->name,
         d->max_assoc_per_source,
         c->max_associations_per_source ? "" : " (derived from the fd limit)",
         tg_udp_total_cap(),
         c->secure ? "; see the half-open caps below" : "");
  if (!c->secure) return;
  if (d->cookies) {
    tg_log(TG_LOG_INFO, "listener %s: DTLS cookies on: a ClientHello without a "
           "valid cookie gets a HelloVerifyRequest no larger than itself; "
           "half-open handshakes: max_half_open = %d, max_half_open_per_source "
           "= %d", c->name, d->max_half_open, d->max_half_open_per_source);
    return;
  }
  if (c->dtls_cookie == TG_COOKIE_OFF)
    tg_log(TG_LOG_INFO, "listener %s: dtls_cookie = off: no stateless cookie "
           "check; a peer gets at most %dx the bytes it sent and nothing on a "
           "timer until its handshake completes; half-open handshakes are "
           "capped (max_half_open = %d, max_half_open_per_source = %d, the "
           "busiest source's oldest evicted first) and last at most "
           "handshake_timeout",
           c->name, TG_AMP_FACTOR, d->max_half_open, d->max_half_open_per_source);
  else
    tg_log(TG_LOG_WARN, "listener %s: DTLS cookies are off: %s removed "
           "server-side HelloVerifyRequest, so spoofed ClientHellos cannot be "
           "told apart; damage is bounded: a peer gets at most %dx the bytes "
           "it sent and nothing on a timer until its handshake completes, "
           "half-open handshakes are capped (max_half_open = %d, "
           "max_half_open_per_source = %d, the busiest source's oldest evicted "
           "first) and end at handshake_timeout "
           "(build with make TLS=openssl for RFC 6347 cookies)",
           c->name, TG_TLS_LIBRARY, TG_AMP_FACTOR, d->max_half_open,
           d->max_half_open_per_source);
}

/* Moves a listener to service s of the worker's current runtime. */
static void adopt(tg_udp_listener_t *ul, tg_service_t *s) {
  tg_runtime_t *old = ul->rt;
  ul->rt = ul->w->rt;
  tg_runtime_ref(ul->rt);
  ul->svc = s;
  ul->ds = s->dtls;
  tg_runtime_unref(old);
}

static void start_draining(tg_udp_listener_t *ul) {
  if (ul->draining) return;
  ul->draining = 1;
  if (ul->table.nassoc)
    tg_log(TG_LOG_INFO, "listener %s (worker %d): no new clients; %zu "
           "association(s) go on until they end or drain_timeout",
           ul->svc->conf->name, ul->w->index, ul->table.nassoc);
  if (ul->table.nalive == 0) close_socket(ul);
}

static int listener_open(tg_worker_t *w, tg_service_t *s, char *err,
                         size_t errsize) {
  tg_udp_listener_t *ul = calloc(1, sizeof(*ul));
  if (ul && RAND_bytes((uint8_t *)&ul->seed, sizeof(ul->seed)) != 1) ERR_clear_error();
  if (!ul || tg_assoc_table_init(&ul->table, ul->seed) != 0 ||
      tg_udp_caps_local_init(ul) != 0) {
    if (ul) {
      tg_assoc_table_free(&ul->table);
      tg_udp_caps_local_free(ul);
    }
    free(ul);
    snprintf(err, errsize, "listener %s: out of memory", s->conf->name);
    return -1;
  }
  ul->magic = TG_UDP_LISTENER_MAGIC;
  ul->table.owner = ul;
  ul->table.on_last_freed = on_last_freed;
  ul->w = w;
  ul->rt = w->rt;
  tg_runtime_ref(ul->rt);
  ul->svc = s;
  ul->ds = s->dtls;
  uv_udp_init_ex(&w->loop, &ul->udp, AF_UNSPEC | UV_UDP_RECVMMSG);
  ul->udp.data = ul;
  /* Without it, one datagram per read (on_alloc falls back to recvbuf). */
  ul->mmsgbuf = malloc((size_t)TG_UDP_MMSG_CHUNKS * TG_UDP_RECV_BUF);
  ul->next = w->udp_listeners;
  w->udp_listeners = ul;
  /* Our own dup() of the runtime's socket for this worker: the runtime
   * closes its copy when it is released. */
  int fd = s->fds[w->index] >= 0 ? fcntl(s->fds[w->index], F_DUPFD_CLOEXEC, 0) : -1;
  int rc = fd < 0 ? UV_EBADF : uv_udp_open(&ul->udp, fd);
  if (rc < 0 && fd >= 0) close(fd);
  if (rc == 0) {
    size_receive_buffer(ul, fd);
    ul->drops_seen = kernel_drops(ul); /* count from now on */
    ul->drops_read_ms = uv_now(&w->loop);
    rc = uv_udp_recv_start(&ul->udp, on_alloc, on_recv);
  }
  if (rc < 0) {
    snprintf(err, errsize, "listener %s: %s", s->conf->name, uv_strerror(rc));
    ul->draining = 1;
    close_socket(ul);
    return -1;
  }
  if (w->index == 0) warn_cookies_off(s);
  return 0;
}

int tg_udp_worker_sync(tg_worker_t *w, char *err, size_t errsize) {
  tg_runtime_t *rt = w->rt;
  int claimed[TG_MAX_LISTENERS] = {0};
  for (tg_udp_listener_t *ul = w->udp_listeners; ul; ul = ul->next) {
    if (ul->draining) continue;
    if (ul->rt == rt) { /* already on this runtime */
      for (size_t i = 0; i < rt->nservices; i++)
        if (rt->services[i] == ul->svc) claimed[i] = 1;
      continue;
    }
    const tg_hostport_t *b = &ul->svc->conf->bind;
    size_t match = rt->nservices;
    for (size_t i = 0; i < rt->nservices; i++) {
      const tg_listener_conf_t *c = rt->services[i]->conf;
      if (!claimed[i] && c->transport == TG_TRANSPORT_UDP &&
          c->bind.addrlen == b->addrlen &&
          memcmp(&c->bind.addr, &b->addr, b->addrlen) == 0) {
        match = i;
        break;
      }
    }
    if (match < rt->nservices) {
      claimed[match] = 1;
      adopt(ul, rt->services[match]);
    } else {
      start_draining(ul);
    }
  }
  int rc = 0;
  for (size_t i = 0; i < rt->nservices; i++) {
    tg_service_t *s = rt->services[i];
    if (claimed[i] || s->conf->transport != TG_TRANSPORT_UDP) continue;
    if (listener_open(w, s, err, errsize) != 0) rc = -1;
  }
  return rc;
}

void tg_udp_worker_drain(tg_worker_t *w) {
  for (tg_udp_listener_t *ul = w->udp_listeners; ul; ul = ul->next)
    start_draining(ul);
}

void tg_udp_worker_close_all(tg_worker_t *w, const char *reason) {
  for (tg_udp_listener_t *ul = w->udp_listeners; ul; ul = ul->next) {
    size_t limit = ul->table.nassoc; /* each close takes one off the list */
    while (ul->table.all && limit--) tg_assoc_close(ul->table.all, TG_LOG_INFO, 1, "%s", reason);
  }
}

