/* Sending datagrams of a UDP listener: to clients on its listening socket,
 * to backends on each association's connected socket.  A datagram in
 * flight owns its bytes until its send callback, which touches only the
 * listener's counters (the listener outlives every association).  Beyond
 * TG_UDP_SENDQ_MAX bytes queued on a socket, datagrams are dropped. */
#ifndef TG_UDP_SEND_H
#define TG_UDP_SEND_H

#include "udp_assoc.h"

/* Sends one datagram on the listening socket (to a client).  0 or -1. */
int tg_udp_send_client(tg_udp_listener_t *ul, const struct sockaddr *to,
                       const void *data, size_t len);
/* Sends one datagram on an association's connected backend socket. */
int tg_udp_send_backend(tg_udp_listener_t *ul, uv_udp_t *h, const void *data,
                        size_t len);

#endif
