/* OpenSSL build: handshake steps that may sign with a token key run on the
 * token's signer thread, so the event loop never waits for a token.
 *
 * OpenSSL 3.0 signs inside SSL_do_handshake (pkcs11_ossl.c's RSA/EC
 * methods) and can only suspend there through ASYNC jobs, fibers that swap
 * stacks under the sanitizers' feet.  So the whole step moves instead: the
 * loop hands the SSL over with its input already received, the signer
 * thread calls SSL_do_handshake (the signature is made in place, under the
 * token's session lock), and a uv_async brings the SSL back to the loop,
 * which sends the output and goes on as after any step.
 *
 * While the step runs, the thread touches only what the job owns: a copy
 * of the input, the side's output block (moved out of the connection's
 * tg_tls_io_t, the stream BIO pointed at the job's), a copy of the SSL's
 * note, and a reference to the SSL.  Write blocks (bufpool.c) come from a
 * per-thread free list; the signer thread empties its own after each step,
 * so no block stays parked there.  See pkcs11.h for the protocol. */
#include "pkcs11.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bufpool.h"

#ifdef OPENSSL_IS_BORINGSSL
/* BoringSSL waits for signatures asynchronously (pkcs11.c): never used. */
int tg_p11_hs_off_loop(const SSL *ssl) { return 0; }
tg_p11_hs_job_t *tg_p11_hs_start(SSL *ssl, tg_tls_io_t *io, int fd, struct uv_loop_s *loop,
                                 void (*done)(void *, tg_p11_hs_job_t *), void *arg,
                                 char *why, size_t whysize) {
  snprintf(why, whysize, "no handshake steps off the loop in this build");
  return NULL;
}
SSL *tg_p11_hs_ssl(const tg_p11_hs_job_t *job) { return NULL; }
const tg_hs_step_t *tg_p11_hs_result(const tg_p11_hs_job_t *job) { return NULL; }
void tg_p11_hs_return(tg_p11_hs_job_t *job, tg_tls_io_t *io, tg_tls_note_t *note) {}
void tg_p11_hs_free(tg_p11_hs_job_t *job) {}
#else

struct tg_p11_hs_job {
  SSL *ssl;            /* the job's own reference */
  tg_tls_note_t note;  /* the SSL's note while the step runs */
  tg_tls_io_t io;      /* the side's TLS buffers while the step runs */
  uint8_t *in;         /* the input the step reads (io.in points into it) */
  tg_hs_step_t step;
  int peer;            /* a duplicate of the peer's socket, or -1 */
  void (*done)(void *arg, tg_p11_hs_job_t *job);
  void *arg;
};

int tg_p11_hs_off_loop(const SSL *ssl) {
  tg_p11_key_t *k = tg_p11_ssl_key(ssl);
  return k != NULL && tg_p11_key_usable(k);
}

/* 1 when a server's step that answers the ClientHello (where the token
 * signs for a client not authenticated yet) finds that client closed or
 * reset its connection (with nothing unread): the client would still have
 * to send its Finished, so no handshake can complete.  Later steps may
 * legitimately follow a client's half-close (Finished, data, FIN) and
 * run.  The loop stops reading a side while its step is away, so it cannot
 * tell; the job's own duplicate of the socket can, without taking data. */
static int peer_gone(SSL *ssl, int fd) {
  if (fd < 0 || !SSL_is_server(ssl)) return 0;
  OSSL_HANDSHAKE_STATE st = SSL_get_state(ssl);
  if (st != TLS_ST_BEFORE && st != TLS_ST_SR_CLNT_HELLO) return 0;
  char b;
  ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void hs_run(void *arg) { /* on the signer thread */
  tg_p11_hs_job_t *j = arg;
  if (peer_gone(j->ssl, j->peer)) {
    /* Its client left while the step waited for the token: the token's
     * time is for the clients that are still there. */
    j->step.rc = -1;
    snprintf(j->step.why, sizeof(j->step.why),
             "the peer closed the connection before its turn at the token");
    return;
  }
  tg_tls_handshake_step(j->ssl, &j->note, &j->step);
  tg_buf_pool_drain();
}

static void hs_done(void *arg) { /* on the loop */
  tg_p11_hs_job_t *j = arg;
  j->done(j->arg, j);
}

tg_p11_hs_job_t *tg_p11_hs_start(SSL *ssl, tg_tls_io_t *io, int fd, struct uv_loop_s *loop,
                                 void (*done)(void *, tg_p11_hs_job_t *), void *arg,
                                 char *why, size_t whysize) {
  tg_tls_note_t *note = tg_tls_get_note(ssl);
  tg_p11_hs_job_t *j = calloc(1, sizeof(*j));
  uint8_t *in = io->inlen ? malloc(io->inlen) : NULL;
  snprintf(why, whysize, "out of memory");
  if (!j || !note || (io->inlen && !in)) {
    free(j);
    free(in);
    return NULL;
  }
  /* Its own descriptor: the loop may close the side's meanwhile. */
  j->peer = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
  j->ssl = ssl;
  j->note = *note;
  j->io = *io;
  if (in) memcpy(in, io->in, io->inlen);
  j->in = in;
  j->io.in = in;
  j->done = done;
  j->arg = arg;
  if (!SSL_up_ref(ssl)) {
    if (j->peer >= 0) close(j->peer);
    free(in);
    free(j);
    return NULL;
  }
  /* The SSL works on the job's buffers and note from here; queueing the
   * job publishes them to the signer thread (under its queue lock). */
  BIO_set_data(SSL_get_rbio(ssl), &j->io);
  tg_tls_set_note(ssl, &j->note);
  if (tg_p11_run_on_signer(tg_p11_ssl_key(ssl), loop, hs_run, hs_done, j, why, whysize) != 0) {
    BIO_set_data(SSL_get_rbio(ssl), io);
    tg_tls_set_note(ssl, note);
    SSL_free(ssl);
    if (j->peer >= 0) close(j->peer);
    free(in);
    free(j);
    return NULL;
  }
  /* For the connection, the input is consumed and the output block gone. */
  size_t headroom = io->headroom;
  memset(io, 0, sizeof(*io));
  io->headroom = headroom;
  return j;
}

SSL *tg_p11_hs_ssl(const tg_p11_hs_job_t *job) { return job->ssl; }
const tg_hs_step_t *tg_p11_hs_result(const tg_p11_hs_job_t *job) { return &job->step; }

void tg_p11_hs_return(tg_p11_hs_job_t *j, tg_tls_io_t *io, tg_tls_note_t *note) {
  tg_tls_io_free(io); /* empty: nothing writes to a side whose step is away */
  *io = j->io;        /* io->in: what the step did not read, in j->in */
  memset(&j->io, 0, sizeof(j->io));
  BIO_set_data(SSL_get_rbio(j->ssl), io);
  *note = j->note;
  tg_tls_set_note(j->ssl, note);
}

void tg_p11_hs_free(tg_p11_hs_job_t *j) {
  if (!j) return;
  tg_tls_io_free(&j->io); /* the side was gone: its output goes too */
  if (j->peer >= 0) close(j->peer);
  SSL_free(j->ssl);
  free(j->in);
  free(j);
}
#endif
