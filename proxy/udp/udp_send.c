/* Datagrams out (udp_send.h). */
#include "udp_send.h"

#include <stdlib.h>
#include <string.h>

/* A datagram in flight owns its bytes; its callback only counts. */
typedef struct {
  uv_udp_send_t req;
  tg_udp_listener_t *ul;
  size_t len;
  uint8_t data[];
} sreq_t;

static void on_sent(uv_udp_send_t *req, int status) {
  sreq_t *r = (sreq_t *)req;
  tg_udp_listener_t *ul = r->ul;
  if (status < 0 && status != UV_ECANCELED) {
    ul->st.send_errors++;
    if (tg_udp_rate_ok(ul, RL_SEND))
      tg_log(TG_LOG_DEBUG, "listener %s: sending a datagram failed: %s",
             ul->svc->conf->name, uv_strerror(status));
  }
  free(r);
}

static int udp_send(tg_udp_listener_t *ul, uv_udp_t *h, const struct sockaddr *to,
                    const void *data, size_t len) {
  if (uv_udp_get_send_queue_size(h) > TG_UDP_SENDQ_MAX) {
    ul->st.drop_sendq++;
    return -1;
  }
  /* Straight to the kernel when nothing is queued (the common case): no
   * copy, no request, no allocation.  UV_EAGAIN: queue it below. */
  uv_buf_t direct = uv_buf_init((char *)data, (unsigned)len);
  int sent = uv_udp_try_send(h, &direct, 1, to);
  if (sent >= 0) return 0;
  if (sent != UV_EAGAIN) {
    ul->st.send_errors++;
    if (tg_udp_rate_ok(ul, RL_SEND))
      tg_log(TG_LOG_DEBUG, "listener %s: sending a datagram failed: %s",
             ul->svc->conf->name, uv_strerror(sent));
    return -1;
  }
  sreq_t *r = malloc(sizeof(*r) + len);
  if (!r) {
    ul->st.send_errors++;
    return -1;
  }
  r->ul = ul;
  r->len = len;
  memcpy(r->data, data, len);
  uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)len);
  int rc = uv_udp_send(&r->req, h, &b, 1, to, on_sent);
  if (rc < 0) {
    free(r);
    ul->st.send_errors++;
    if (tg_udp_rate_ok(ul, RL_SEND))
      tg_log(TG_LOG_DEBUG, "listener %s: sending a datagram failed: %s",
             ul->svc->conf->name, uv_strerror(rc));
    return -1;
  }
  return 0;
}

int tg_udp_send_client(tg_udp_listener_t *ul, const struct sockaddr *to,
                       const void *data, size_t len) {
  if (udp_send(ul, &ul->udp, to, data, len) != 0) return -1;
  ul->st.dgrams_out++;
  ul->st.bytes_out += len;
  return 0;
}

int tg_udp_send_backend(tg_udp_listener_t *ul, uv_udp_t *h, const void *data,
                        size_t len) {
  if (udp_send(ul, h, NULL, data, len) != 0) return -1;
  ul->st.backend_dgrams_out++;
  return 0;
}

