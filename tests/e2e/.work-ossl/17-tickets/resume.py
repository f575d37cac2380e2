import socket, ssl, sys, e2elib
_ctx = {}  # Python reuses a session only with the context that made it
def session_from(port, version, session=None):
    if version not in _ctx:
        _ctx[version] = e2elib.tls_context(version=version)
    ctx = _ctx[version]
    s = ctx.wrap_socket(e2elib.tcp_connect(port), server_hostname="localhost", session=session)
    s.sendall(b"x\n"); assert e2elib.recv_exact(s, 2) == b"x\n"  # the TLS 1.3 ticket comes after the handshake
    reused, sess = s.session_reused, s.session
    s.close()
    return reused, sess
