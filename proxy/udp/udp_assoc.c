/* One client association of a UDP listener: its DTLS session (or none),
 * its own backend socket (plain or DTLS), its timer, and the datagrams in
 * between.  See udp_assoc.h for the states and ownership. */
#include "udp_assoc.h"

#include <assert.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_table.h"
#include "backend.h"
#include "dgram_bio.h"
#include "metrics.h"
#include "psk.h"
#include "tls_compat.h"
#include "udp_caps.h"
#include "udp_send.h"

static const tg_session_ops_t assoc_ops;

static const char *const state_names[] = {"handshake", "connecting",
                                          "established", "closing"};

static const tg_listener_conf_t *conf_of(const tg_udp_assoc_t *a) {
  return a->s.svc->conf;
}

static uv_loop_t *loop_of(const tg_udp_assoc_t *a) { return &a->ul->w->loop; }

/* ---- anti-amplification ------------------------------------------------------
 * Until a peer without a verified cookie has completed its handshake, every
 * datagram its session writes is kept in a->fhead.. (the current flight) and
 * sent only while the bytes sent stay within TG_AMP_FACTOR times the bytes
 * received from that address and port.  What does not fit waits for the
 * peer's next datagram (its retransmitted ClientHello, which brings more
 * allowance); the session's own retransmission timer is not used. */

static void flight_free(tg_udp_assoc_t *a) {
  while (a->fhead) {
    tg_qdgram_t *q = a->fhead;
    a->fhead = q->next;
    free(q);
  }
  a->ftail = a->fnext = NULL;
  a->fbytes = 0;
}

/* Sends the flight's unsent datagrams in order while the allowance lasts
 * (all of them once the peer is validated). */
static void flight_send(tg_udp_assoc_t *a) {
  if (a->hold_all && !a->validated) return;
  while (a->fnext) {
    tg_qdgram_t *q = a->fnext;
    if (!a->validated && a->amp_out + q->len > TG_AMP_FACTOR * a->amp_in) break;
    if (tg_udp_send_client(a->ul, (const struct sockaddr *)&a->peer, q->data,
                           q->len) == 0)
      a->amp_out += q->len;
    a->fnext = q->next;
  }
}

/* Appends a copy of a datagram to the list head..tail; NULL when out of
 * memory. */
static tg_qdgram_t *qdgram_append(tg_qdgram_t **head, tg_qdgram_t **tail, const uint8_t *p,
                               size_t n) {
  tg_qdgram_t *q = malloc(sizeof(*q) + n);
  if (!q) return NULL;
  q->next = NULL;
  q->len = n;
  memcpy(q->data, p, n);
  if (*tail) (*tail)->next = q;
  else *head = q;
  *tail = q;
  return q;
}

static void flight_add(tg_udp_assoc_t *a, const uint8_t *p, size_t n) {
  if (a->new_burst) { /* the session wrote anew: the old flight is over */
    a->new_burst = 0;
    flight_free(a);
  }
  tg_qdgram_t *q = a->fbytes + n <= TG_AMP_HOLD_MAX ? qdgram_append(&a->fhead, &a->ftail, p, n)
                                                : NULL;
  if (!q) {
    a->ul->st.drop_queue++;
    return;
  }
  a->fbytes += n;
  if (!a->fnext) a->fnext = q;
  flight_send(a);
  if (a->fnext) { /* held back by the allowance */
    a->ul->st.amp_held++;
    atomic_fetch_add_explicit(&a->s.svc->stats->dtls_amplification_limited, 1,
                              memory_order_relaxed);
  }
}

/* The peer has shown that it receives: what is held goes out now. */
static void validated(tg_udp_assoc_t *a) {
  if (a->validated) return;
  a->validated = 1;
  flight_send(a);
  flight_free(a);
}

/* ---- lifetime ---------------------------------------------------------------- */

/* The last reference is gone (session.h). */
static void assoc_destroy(tg_session_t *sess) {
  tg_udp_assoc_t *a = (tg_udp_assoc_t *)sess;
  assert(a->magic == TG_UDP_ASSOC_MAGIC);
  SSL_free(a->ssl);
  SSL_free(a->bssl);
  while (a->qhead) {
    tg_qdgram_t *q = a->qhead;
    a->qhead = q->next;
    free(q);
  }
  flight_free(a);
  tg_udp_listener_t *ul = a->ul;
  a->magic = 0;
  free(a);
  tg_assoc_table_freed(&ul->table);
}

/* ---- idle record buffers (TG_DTLS_IDLE_BUFFERS) ---------------------------------
 * Where the library keeps its record buffers for the life of the SSL
 * (OpenSSL: about 34 KiB), an established association quiet for
 * TG_ASSOC_IDLE_BUFFERS_MS gives them back (on its timer, see schedule),
 * and takes them again before its SSL is used: a fleet of mostly idle
 * devices then holds buffers only for the ones talking. */

static void schedule(tg_udp_assoc_t *a);

/* Before any SSL call on a->ssl: 0, or -1 out of memory.  The timer then
 * looks again when they may go. */
static int buffers_wake(tg_udp_assoc_t *a) {
  if (!a->buffers_released) return 0;
  if (!tg_dtls_alloc_buffers(a->ssl)) return -1;
  a->buffers_released = 0;
  schedule(a);
  return 0;
}

/* When the buffers may go (UINT64_MAX: nothing to release). */
static uint64_t buffers_due(const tg_udp_assoc_t *a) {
  if (!TG_DTLS_IDLE_BUFFERS || !a->ssl || a->buffers_released ||
      a->s.state != TG_ASSOC_ESTABLISHED)
    return UINT64_MAX;
  uint64_t due = a->s.last_activity_ms + TG_ASSOC_IDLE_BUFFERS_MS;
  return due > a->buffers_retry_ms ? due : a->buffers_retry_ms;
}

static void buffers_release_if_idle(tg_udp_assoc_t *a, uint64_t now) {
  if (buffers_due(a) > now) return;
  ERR_clear_error();
  if (tg_dtls_free_buffers(a->ssl))
    a->buffers_released = 1;
  else /* data pending in them: later */
    a->buffers_retry_ms = now + TG_ASSOC_IDLE_BUFFERS_MS;
  ERR_clear_error();
}

void tg_assoc_close(tg_udp_assoc_t *a, tg_log_level_t level, int notify,
                    const char *fmt, ...) {
  if (a->s.state == TG_ASSOC_CLOSING) return;
  char reason[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  /* close_notify towards whoever has a finished session (it goes out now:
   * the sockets close only after the send was handed to the kernel or
   * cancelled). */
  if (notify && a->ssl && SSL_is_init_finished(a->ssl) && buffers_wake(a) == 0) {
    ERR_clear_error();
    SSL_shutdown(a->ssl);
    ERR_clear_error();
  }
  if (notify && a->bssl && a->bsock_open && SSL_is_init_finished(a->bssl)) {
    ERR_clear_error();
    SSL_shutdown(a->bssl);
    ERR_clear_error();
  }
  tg_session_closed(&a->s, level, reason);
  tg_udp_listener_t *ul = a->ul;
  tg_udp_half_open_release(ul, a);
  tg_udp_assoc_release(a);
  tg_assoc_table_forget(&ul->table, a);
  if (a->predecessor) { /* a new handshake that did not complete */
    a->predecessor->successor = NULL;
    a->predecessor = NULL;
  }
  if (a->successor) { /* its pending new handshake takes the peer over */
    tg_udp_assoc_t *s = a->successor;
    a->successor = NULL;
    s->predecessor = NULL;
    tg_assoc_table_findable(&ul->table, s);
  }
  uv_close((uv_handle_t *)&a->timer, tg_session_on_closed);
  if (a->bsock_open) {
    a->bsock_open = 0;
    uv_close((uv_handle_t *)&a->bsock, tg_session_on_closed);
  }
}

tg_udp_assoc_t *tg_assoc_new(tg_udp_listener_t *ul, const struct sockaddr *peer,
                             uint64_t hash, tg_udp_assoc_t *predecessor) {
  tg_udp_assoc_t *a = calloc(1, sizeof(*a));
  if (!a) {
    tg_log(TG_LOG_ERROR, "listener %s: out of memory for a new association",
           ul->svc->conf->name);
    return NULL;
  }
  tg_worker_t *w = ul->w;
  a->magic = TG_UDP_ASSOC_MAGIC;
  a->ul = ul;
  a->hash = hash;
  memcpy(&a->peer, peer, peer->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                     : sizeof(struct sockaddr_in6));
  int active = tg_session_start(&a->s, &assoc_ops, w, ul->rt, ul->svc, peer);
  uv_timer_init(&w->loop, &a->timer);
  a->timer.data = a;
  a->s.refs = 1;
  a->s.state = a->s.svc->server_ctx ? TG_ASSOC_HANDSHAKE : TG_ASSOC_CONNECTING;
  a->validated = !a->s.svc->server_ctx; /* the amplification rule is for DTLS */
  tg_assoc_table_add(&ul->table, a, predecessor == NULL);
  if (predecessor) {
    predecessor->successor = a;
    a->predecessor = predecessor;
  }
  tg_session_log(&a->s, TG_LOG_DEBUG, "new", "new association (%zu on this worker, %d active)",
       ul->table.nassoc, active);
  return a;
}

/* ---- timers --------------------------------------------------------------------- */

static uint64_t tv_ms(const struct timeval *tv) {
  return (uint64_t)tv->tv_sec * 1000 + ((uint64_t)tv->tv_usec + 999) / 1000;
}

static void on_timer(uv_timer_t *t);

/* Arms the timer for the earliest of: the handshake or connect deadline,
 * each DTLS retransmission timer, the idle end of an established
 * association.  A timer already due earlier stays: it recomputes. */
static void schedule(tg_udp_assoc_t *a) {
  if (a->s.state == TG_ASSOC_CLOSING) return;
  uint64_t now = uv_now(loop_of(a)), due = UINT64_MAX;
  struct timeval tv;
  if (a->deadline_ms) due = a->deadline_ms;
  /* Nothing on a timer towards a peer that has not shown it receives. */
  if (a->ssl && a->validated && DTLSv1_get_timeout(a->ssl, &tv) == 1 &&
      now + tv_ms(&tv) < due)
    due = now + tv_ms(&tv);
  if (a->bssl && DTLSv1_get_timeout(a->bssl, &tv) == 1 && now + tv_ms(&tv) < due)
    due = now + tv_ms(&tv);
  if (a->s.state == TG_ASSOC_ESTABLISHED &&
      a->s.last_activity_ms + conf_of(a)->session_timeout_ms < due)
    due = a->s.last_activity_ms + conf_of(a)->session_timeout_ms;
  if (buffers_due(a) < due) due = buffers_due(a);
  if (due == UINT64_MAX) return;
  if (a->timer_armed && a->timer_due <= due) return;
  uv_timer_start(&a->timer, on_timer, due > now ? due - now : 0, 0);
  a->timer_armed = 1;
  a->timer_due = due;
}

static int dtls_timer_expired(SSL *ssl) {
  struct timeval tv;
  return DTLSv1_get_timeout(ssl, &tv) == 1 && tv.tv_sec == 0 && tv.tv_usec == 0;
}

static void on_timer(uv_timer_t *t) {
  tg_udp_assoc_t *a = t->data;
  const tg_listener_conf_t *l = conf_of(a);
  a->timer_armed = 0;
  if (a->s.state == TG_ASSOC_CLOSING) return;
  uint64_t now = uv_now(loop_of(a));
  char why[700];
  if (a->deadline_ms && now >= a->deadline_ms) {
    if (a->s.state == TG_ASSOC_HANDSHAKE) {
      a->ul->st.hs_timeout++;
      tg_session_count_handshake(&a->s, TG_HS_TIMEOUT);
      tg_assoc_close(a, TG_LOG_INFO, 0, "handshake timeout (%llu ms)",
                     (unsigned long long)l->handshake_timeout_ms);
    } else {
      snprintf(why, sizeof(why), "no answer within connect_timeout (%llu ms)",
               (unsigned long long)l->connect_timeout_ms);
      tg_session_backend_failed(&a->s, why);
      schedule(a);
    }
    return;
  }
  if (a->ssl && a->validated && dtls_timer_expired(a->ssl)) {
    ERR_clear_error();
    if (buffers_wake(a) != 0 || DTLSv1_handle_timeout(a->ssl) < 0) {
      a->ul->st.hs_failed++;
      tg_session_count_handshake(&a->s, TG_HS_TIMEOUT);
      tg_assoc_close(a, TG_LOG_WARN, 0, "handshake failed: %s",
                     tg_tls_failure(a->ssl, &a->note, why, sizeof(why)));
      return;
    }
  }
  if (a->bssl && a->bsock_open && dtls_timer_expired(a->bssl)) {
    ERR_clear_error();
    if (DTLSv1_handle_timeout(a->bssl) < 0) {
      char reason[800];
      snprintf(reason, sizeof(reason), "DTLS handshake failed: %s",
               tg_tls_failure(a->bssl, &a->bnote, why, sizeof(why)));
      tg_session_backend_failed(&a->s, reason);
    }
  }
  if (a->s.state == TG_ASSOC_CLOSING) return;
  if (a->s.state == TG_ASSOC_ESTABLISHED &&
      now - a->s.last_activity_ms >= l->session_timeout_ms) {
    tg_assoc_close(a, TG_LOG_INFO, 1, "idle for session_timeout (%llu ms)",
                   (unsigned long long)l->session_timeout_ms);
    return;
  }
  buffers_release_if_idle(a, now);
  schedule(a);
}

/* ---- sending ------------------------------------------------------------------- */

/* What the datagram BIOs hand on: every datagram a session writes. */
static void client_dgram_out(void *ctx, const uint8_t *p, size_t n) {
  tg_udp_assoc_t *a = ctx;
  if (!a->validated) flight_add(a, p, n);
  else tg_udp_send_client(a->ul, (const struct sockaddr *)&a->peer, p, n);
}

static void backend_dgram_out(void *ctx, const uint8_t *p, size_t n) {
  tg_udp_assoc_t *a = ctx;
  if (a->bsock_open) tg_udp_send_backend(a->ul, &a->bsock, p, n);
}

/* A datagram that cannot become one DTLS record within dtls_mtu is dropped
 * and said so, never cut. */
static void too_large(tg_udp_assoc_t *a, const char *from, size_t n, size_t max) {
  a->ul->st.too_large++;
  tg_session_log(&a->s, a->warned_too_large ? TG_LOG_DEBUG : TG_LOG_WARN, "too-large",
       "datagram of %zu bytes from %s does not fit one DTLS record within "
       "dtls_mtu = %d (at most %zu bytes of data): dropped (%llu on this "
       "listener so far)",
       n, from, conf_of(a)->dtls_mtu, max,
       (unsigned long long)a->ul->st.too_large);
  a->warned_too_large = 1;
}

static size_t record_room(SSL *ssl, unsigned mtu) {
  size_t max = tg_dtls_data_mtu(ssl, mtu);
  return max > TG_DTLS_MAX_PLAIN ? TG_DTLS_MAX_PLAIN : max;
}

static void send_backend(tg_udp_assoc_t *a, const uint8_t *p, size_t n) {
  if (!a->bssl) {
    tg_udp_send_backend(a->ul, &a->bsock, p, n);
    return;
  }
  size_t max = record_room(a->bssl, a->bio_io.mtu);
  if (n > max) {
    too_large(a, "client", n, max);
    return;
  }
  ERR_clear_error();
  if (SSL_write(a->bssl, p, (int)n) <= 0) {
    char why[700];
    tg_assoc_close(a, TG_LOG_WARN, 1, "DTLS write to backend %s failed: %s",
                   tg_session_backend_text(&a->s),
                   tg_tls_failure(a->bssl, &a->bnote, why, sizeof(why)));
  }
}

/* Plaintext from the client, for the backend (held while connecting). */
static void to_backend(tg_udp_assoc_t *a, const uint8_t *p, size_t n) {
  a->s.bytes_from_client += n;
  if (a->s.state == TG_ASSOC_ESTABLISHED) {
    send_backend(a, p, n);
    return;
  }
  if (a->qcount >= TG_ASSOC_QUEUE_MAX || a->qbytes + n > TG_ASSOC_QUEUE_BYTES) {
    a->ul->st.drop_queue++;
    return;
  }
  if (!qdgram_append(&a->qhead, &a->qtail, p, n)) {
    a->ul->st.drop_queue++;
    return;
  }
  a->qcount++;
  a->qbytes += n;
}

/* Plaintext from the backend, for the client. */
static void to_client(tg_udp_assoc_t *a, const uint8_t *p, size_t n) {
  a->s.bytes_from_backend += n;
  a->s.last_activity_ms = uv_now(loop_of(a));
  if (!a->ssl) {
    tg_udp_send_client(a->ul, (const struct sockaddr *)&a->peer, p, n);
    return;
  }
  size_t max = record_room(a->ssl, a->cio.mtu);
  if (n > max) {
    too_large(a, "backend", n, max);
    return;
  }
  if (buffers_wake(a) != 0) {
    tg_assoc_close(a, TG_LOG_ERROR, 0, "out of memory for DTLS buffers");
    return;
  }
  ERR_clear_error();
  if (SSL_write(a->ssl, p, (int)n) <= 0) {
    char why[700];
    tg_assoc_close(a, TG_LOG_WARN, 0, "DTLS write to client failed: %s",
                   tg_tls_failure(a->ssl, &a->note, why, sizeof(why)));
  }
}

/* ---- DTLS sessions ------------------------------------------------------------------ */

static int attach_io(tg_udp_assoc_t *a, SSL *ssl, tg_dgram_io_t *io, int backend) {
  io->ctx = a;
  io->out = backend ? backend_dgram_out : client_dgram_out;
  io->mtu = (unsigned)conf_of(a)->dtls_mtu;
  BIO *b = tg_dgram_bio_new(io);
  if (!b) return -1;
  SSL_set_bio(ssl, b, b); /* replaces (and frees) the memory BIOs */
  SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
  SSL_set_mtu(ssl, io->mtu);
  /* No record is larger than a datagram: OpenSSL sizes its write buffer
   * by this (16 KiB otherwise), for every association. */
  if (io->mtu >= 512 && io->mtu <= 16384) SSL_set_max_send_fragment(ssl, io->mtu);
  SSL_set_ex_data(ssl, tg_dtls_assoc_index(), a);
  return 0;
}

/* Decrypts whatever the session holds and hands it on.  Each record is one
 * datagram; the loop ends when the fed datagram is used up. */
static void pump(tg_udp_assoc_t *a, int backend) {
  SSL *ssl = backend ? a->bssl : a->ssl;
  uint8_t *buf = a->ul->plainbuf;
  for (;;) {
    ERR_clear_error();
    int r = SSL_read(ssl, buf, (int)sizeof(a->ul->plainbuf));
    if (r > 0 && !backend) a->peer_auth_ms = uv_now(loop_of(a));
    if (r > 0 && !backend && a->successor)
      /* The peer is alive in this session: the new ClientHello from its
       * address was not its own. */
      tg_assoc_close(a->successor, TG_LOG_INFO, 0, "ended: the peer is alive "
                     "in its established session, so this ClientHello in "
                     "its name was not its own");
    if (r > 0) {
      if (backend) to_client(a, buf, (size_t)r);
      else to_backend(a, buf, (size_t)r);
      if (a->s.state == TG_ASSOC_CLOSING) return;
      continue;
    }
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    if (e == SSL_ERROR_ZERO_RETURN) {
      tg_assoc_close(a, TG_LOG_INFO, 1, "%s sent close_notify",
                     backend ? "backend" : "client");
      return;
    }
    char why[700];
    tg_assoc_close(a, TG_LOG_WARN, 1, "DTLS error from %s: %s",
                   backend ? "backend" : "client",
                   tg_tls_failure(ssl, backend ? &a->bnote : &a->note, why,
                                  sizeof(why)));
    return;
  }
}

static void client_handshake_done(tg_udp_assoc_t *a) {
  /* The peer answered our flight with a Finished that verified: it is
   * really at this address.  (Its flight arrived before this returned.) */
  validated(a);
  tg_udp_half_open_release(a->ul, a);
  a->ul->st.hs_ok++;
  tg_session_handshake_ok(&a->s, a->ssl);
  if (a->predecessor) {
    /* The client did start over: its old association is dead to it. */
    tg_udp_assoc_t *old = a->predecessor;
    a->ul->st.restarted++;
    tg_assoc_close(old, TG_LOG_INFO, 0, "client started a new handshake from "
                   "the same address and port");
    tg_assoc_table_findable(&a->ul->table, a);
  }
  const char *psk = SSL_get_psk_identity(a->ssl);
  char id[PSK_MAX_IDENTITY_LEN + 1] = "";
  if (psk) tg_psk_printable(psk, id, sizeof(id));
  tg_session_log(&a->s, TG_LOG_INFO, "handshake", "%s %s%s%s%s%s%s", SSL_get_version(a->ssl),
       SSL_CIPHER_get_name(SSL_get_current_cipher(a->ssl)),
       SSL_session_reused(a->ssl) ? " resumed" : "",
       a->note.peer[0] ? ", peer " : "", a->note.peer,
       id[0] ? ", psk identity " : "", id);
  a->deadline_ms = 0;
  tg_session_set_state(&a->s, TG_ASSOC_CONNECTING);
  if (tg_udp_total_admit(a) != 0) {
    tg_assoc_close(a, TG_LOG_WARN, 1, "udp associations at the process cap "
                   "(derived from the fd limit): no backend socket for it");
    return;
  }
  tg_session_connect_next(&a->s);
  /* Records that came with the client's last flight wait in the session. */
  if (a->s.state != TG_ASSOC_CLOSING) pump(a, 0);
}

static void client_handshake_step(tg_udp_assoc_t *a) {
  ERR_clear_error();
  int r = SSL_do_handshake(a->ssl);
  char why[700];
  if (r == 1 && tg_tls_check_session(a->ssl, &a->note, why, sizeof(why)) != 0) {
    a->ul->st.hs_failed++;
    tg_session_count_handshake(&a->s, tg_tls_hs_result(&a->note));
    tg_assoc_close(a, TG_LOG_WARN, 0, "handshake failed: %s", why);
    return;
  }
  if (r == 1) {
    client_handshake_done(a);
    return;
  }
  int e = SSL_get_error(a->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  a->ul->st.hs_failed++;
  if (e == SSL_ERROR_ZERO_RETURN) {
    snprintf(why, sizeof(why), "client sent close_notify");
    tg_session_count_handshake(&a->s, TG_HS_CLOSED);
  } else {
    tg_tls_failure(a->ssl, &a->note, why, sizeof(why));
    tg_session_count_handshake(&a->s, tg_tls_hs_result(&a->note));
  }
  tg_assoc_close(a, TG_LOG_WARN, 0, "handshake failed: %s", why);
}

void tg_assoc_start_dtls(tg_udp_assoc_t *a, const uint8_t *p, size_t n,
                         int cookie_checked) {
  tg_service_t *svc = a->s.svc;
  a->note.conf = svc->conf;
  a->ssl = tg_tls_new(svc->server_ctx, &a->note, NULL);
  if (!a->ssl || attach_io(a, a->ssl, &a->cio, 0) != 0) {
    tg_assoc_close(a, TG_LOG_ERROR, 0, "cannot create DTLS state");
    return;
  }
  tg_dtls_shed_when_established(a->ssl);
  a->deadline_ms = uv_now(loop_of(a)) + svc->conf->handshake_timeout_ms;
  a->cio.rdata = p;
  a->cio.rlen = n;
  a->validated = cookie_checked; /* a verified cookie shows it receives */
  a->amp_in = n;
  a->hold_all = a->predecessor && !cookie_checked;
  a->hello_ms = uv_now(loop_of(a));
  a->new_burst = 1;
  if (cookie_checked) {
    /* The cookie is verified already; DTLSv1_listen sets the session up
     * to continue after the HelloVerifyRequest we sent statelessly. */
    ERR_clear_error();
    if (tg_dtls_listen(a->ssl) != 1) {
      char why[400];
      a->ul->st.hs_failed++;
      tg_session_count_handshake(&a->s, TG_HS_PROTOCOL);
      tg_assoc_close(a, TG_LOG_WARN, 0, "ClientHello not accepted: %s",
                     tg_tls_errors(why, sizeof(why)));
      return;
    }
    SSL_set_mtu(a->ssl, a->cio.mtu);
  }
  client_handshake_step(a);
  a->cio.rdata = NULL;
  schedule(a);
}

void tg_assoc_client_datagram(tg_udp_assoc_t *a, const uint8_t *p, size_t n) {
  if (a->s.state == TG_ASSOC_CLOSING) return;
  a->s.last_activity_ms = uv_now(loop_of(a));
  if (!a->ssl) {
    to_backend(a, p, n);
    return;
  }
  if (buffers_wake(a) != 0) {
    tg_assoc_close(a, TG_LOG_ERROR, 0, "out of memory for DTLS buffers");
    return;
  }
  a->cio.rdata = p;
  a->cio.rlen = n;
  if (!a->validated) {
    a->amp_in += n;
    a->new_burst = 1;
  }
  if (!SSL_is_init_finished(a->ssl)) client_handshake_step(a);
  else pump(a, 0);
  a->cio.rdata = NULL; /* what the session did not take is gone */
  schedule(a);
}

void tg_assoc_hello_again(tg_udp_assoc_t *a, const uint8_t *p, size_t n) {
  if (a->s.state == TG_ASSOC_CLOSING) return;
  if (a->s.state != TG_ASSOC_HANDSHAKE) {
    /* Its handshake is over: a copy of its first ClientHello (a late
     * duplicate, or a replay in its name) has nothing to say. */
    a->ul->st.drop_not_hello++;
    return;
  }
  if (a->validated || !a->fhead) {
    tg_assoc_client_datagram(a, p, n); /* the session retransmits itself */
    return;
  }
  /* The peer did not get all of our flight: what was held back goes out
   * first; when everything was sent already, the whole flight again, as
   * far as the allowance reaches.  The session is not asked (it would
   * retransmit on top). */
  uint64_t now = uv_now(loop_of(a));
  a->s.last_activity_ms = now;
  a->amp_in += n;
  if (a->hold_all) {
    /* A copy right behind the first is no client's retransmission timer. */
    if (now - a->hello_ms < TG_SUCCESSOR_WAIT_MS) return;
    a->hold_all = 0;
  }
  if (!a->fnext) a->fnext = a->fhead;
  flight_send(a);
  if (a->fnext) {
    a->ul->st.amp_held++;
    atomic_fetch_add_explicit(&a->s.svc->stats->dtls_amplification_limited, 1,
                              memory_order_relaxed);
  }
}

void tg_assoc_start_plain(tg_udp_assoc_t *a, const uint8_t *p, size_t n) {
  to_backend(a, p, n);
  tg_session_connect_next(&a->s);
  schedule(a);
}

/* ---- the backend ------------------------------------------------------------------- */

static void backend_ready(tg_udp_assoc_t *a) {
  a->deadline_ms = 0;
  tg_session_set_state(&a->s, TG_ASSOC_ESTABLISHED);
  a->s.last_activity_ms = uv_now(loop_of(a));
  if (a->bssl) {
    tg_session_backend_answers(&a->s);
    a->backend_answered = 1;
    tg_session_log(&a->s, TG_LOG_INFO, "backend", "connected to %s over %s %s%s%s",
         tg_session_backend_text(&a->s), SSL_get_version(a->bssl),
         SSL_CIPHER_get_name(SSL_get_current_cipher(a->bssl)),
         a->bnote.peer[0] ? ", peer " : "", a->bnote.peer);
  } else {
    tg_session_log(&a->s, TG_LOG_INFO, "backend", "relaying to %s", tg_session_backend_text(&a->s));
  }
  while (a->qhead && a->s.state == TG_ASSOC_ESTABLISHED) {
    tg_qdgram_t *q = a->qhead;
    a->qhead = q->next;
    if (!a->qhead) a->qtail = NULL;
    a->qcount--;
    a->qbytes -= q->len;
    send_backend(a, q->data, q->len);
    free(q);
  }
  schedule(a);
}

static void backend_handshake_step(tg_udp_assoc_t *a) {
  ERR_clear_error();
  int r = SSL_do_handshake(a->bssl);
  char check[700];
  if (r == 1 && tg_tls_check_session(a->bssl, &a->bnote, check, sizeof(check)) != 0) {
    char reason[800];
    snprintf(reason, sizeof(reason), "DTLS handshake failed: %s", check);
    tg_session_backend_failed(&a->s, reason);
    return;
  }
  if (r == 1) {
    backend_ready(a);
    if (a->s.state == TG_ASSOC_ESTABLISHED) pump(a, 1);
    return;
  }
  int e = SSL_get_error(a->bssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  char why[700], reason[800];
  snprintf(reason, sizeof(reason), "DTLS handshake failed: %s",
           tg_tls_failure(a->bssl, &a->bnote, why, sizeof(why)));
  tg_session_backend_failed(&a->s, reason);
}

static void on_backend_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tg_udp_assoc_t *a = h->data;
  buf->base = (char *)a->ul->recvbuf;
  buf->len = sizeof(a->ul->recvbuf);
}

static void on_backend_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                            const struct sockaddr *from, unsigned flags) {
  tg_udp_assoc_t *a = h->data;
  if (a->s.state == TG_ASSOC_CLOSING || !a->bsock_open || nread == 0) return;
  if (nread < 0) {
    /* e.g. ECONNREFUSED: an ICMP port unreachable came back. */
    tg_session_backend_failed(&a->s, uv_strerror((int)nread));
    schedule(a);
    return;
  }
  a->ul->st.backend_dgrams_in++;
  const uint8_t *p = (const uint8_t *)buf->base;
  size_t n = (size_t)nread;
  if (flags & UV_UDP_PARTIAL) {
    too_large(a, "backend", n, sizeof(a->ul->recvbuf));
    return;
  }
  if (!a->backend_answered) {
    a->backend_answered = 1;
    tg_session_backend_answers(&a->s);
  }
  if (!a->bssl) {
    to_client(a, p, n);
  } else {
    a->bio_io.rdata = p;
    a->bio_io.rlen = n;
    if (!SSL_is_init_finished(a->bssl)) backend_handshake_step(a);
    else pump(a, 1);
    if (a->bssl) a->bio_io.rdata = NULL;
  }
  schedule(a);
}

/* EMFILE and the like are this process's shortage, not the backend's:
 * the association ends and the backend does not rest. */
static int local_failure(tg_udp_assoc_t *a, int rc) {
  if (!tg_local_resource_error(rc)) return 0;
  a->ul->st.local_errors++;
  tg_session_count_local_error(&a->s);
  tg_assoc_close(a, TG_LOG_WARN, 1, "cannot open a socket to backend %s: %s "
                 "(a local limit: the backend does not rest)", tg_session_backend_text(&a->s),
                 uv_strerror(rc));
  return 1;
}

static void assoc_open_backend(tg_session_t *sess, const struct sockaddr *addr) {
  tg_udp_assoc_t *a = (tg_udp_assoc_t *)sess;
  tg_service_t *svc = a->s.svc;
  char why[700];
  int rc = uv_udp_init_ex(loop_of(a), &a->bsock, addr->sa_family);
  if (rc < 0) {
    if (!local_failure(a, rc)) tg_session_backend_failed(&a->s, uv_strerror(rc));
    return;
  }
  a->bsock.data = a;
  a->bsock_open = 1;
  a->s.refs++;
  rc = uv_udp_connect(&a->bsock, addr);
  if (rc == 0) rc = uv_udp_recv_start(&a->bsock, on_backend_alloc, on_backend_recv);
  if (rc < 0) {
    if (!local_failure(a, rc)) tg_session_backend_failed(&a->s, uv_strerror(rc));
    return;
  }
  if (!svc->backend_ctx) {
    backend_ready(a);
    return;
  }
  memset(&a->bnote, 0, sizeof(a->bnote));
  a->bnote.conf = svc->conf;
  a->bnote.backend = 1;
  a->bssl = tg_tls_new(svc->backend_ctx, &a->bnote,
                       svc->conf->backends[a->s.backend_idx].host);
  if (!a->bssl || attach_io(a, a->bssl, &a->bio_io, 1) != 0) {
    snprintf(why, sizeof(why), "cannot create DTLS state for the backend");
    tg_assoc_close(a, TG_LOG_ERROR, 1, "%s", why);
    return;
  }
  backend_handshake_step(a);
}

/* ---- the session core's view (session.h) ------------------------------------- */

/* Forgets a failed backend attempt; the client's datagrams wait meanwhile
 * and the next attempt gets a fresh socket. */
static uv_handle_t *assoc_drop_backend(tg_session_t *sess) {
  tg_udp_assoc_t *a = (tg_udp_assoc_t *)sess;
  SSL_free(a->bssl);
  a->bssl = NULL;
  a->bio_io.rdata = NULL;
  a->deadline_ms = 0;
  a->backend_answered = 0;
  if (!a->bsock_open) return NULL;
  a->bsock_open = 0;
  return (uv_handle_t *)&a->bsock;
}

static void assoc_fail(tg_session_t *sess, tg_log_level_t level, const char *reason) {
  tg_assoc_close((tg_udp_assoc_t *)sess, level, 1, "%s", reason);
}

static void assoc_arm_connect(tg_session_t *sess, uint64_t ms) {
  tg_udp_assoc_t *a = (tg_udp_assoc_t *)sess;
  a->deadline_ms = uv_now(loop_of(a)) + ms;
}

static void assoc_settle(tg_session_t *sess) { schedule((tg_udp_assoc_t *)sess); }

static const tg_session_ops_t assoc_ops = {
    .state_names = state_names, .connecting = TG_ASSOC_CONNECTING, .closing = TG_ASSOC_CLOSING,
    .socktype = SOCK_DGRAM, .oom_level = TG_LOG_ERROR,
    .fail = assoc_fail, .arm_connect = assoc_arm_connect, .settle = assoc_settle,
    .open_backend = assoc_open_backend, .drop_backend = assoc_drop_backend,
    .destroy = assoc_destroy,
};
