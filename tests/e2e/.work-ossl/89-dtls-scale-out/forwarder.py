"""A UDP 'balancer' that sends each client's first datagram to FIRST and all
later ones to REST, from one socket per client, and relays the answers."""
import select, socket, sys
listen, first, rest, done = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
front.bind(("127.0.0.1", listen))
print("listening", flush=True)
clients = {}   # client addr -> [upstream socket, datagrams sent]
back = {}      # upstream socket -> client addr
import os, time
end = time.time() + 120
while time.time() < end and not os.path.exists(done):
    r, _, _ = select.select([front] + list(back), [], [], 0.2)
    for s in r:
        if s is front:
            data, addr = front.recvfrom(65535)
            if addr not in clients:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.bind(("127.0.0.1", 0))
                clients[addr] = [up, 0]
                back[up] = addr
            up, n = clients[addr]
            up.sendto(data, ("127.0.0.1", first if n == 0 else rest))
            clients[addr][1] += 1
        else:
            data, _ = s.recvfrom(65535)
            front.sendto(data, back[s])
