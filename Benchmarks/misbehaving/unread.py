import socket, sys, time, select
sock, pid = sys.argv[1], int(sys.argv[2])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
s = socket.socket(socket.AF_UNIX); s.connect(sock); s.setblocking(False)
req = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n"; total = 100_000; want = total * len(req)
reply = 65536 + len(b"$65536\r\n\r\n")
before = rss(); peak = before; sent = 0; start = time.time(); last = time.time()
# Phase 1: write without ever reading, until the daemon takes no more for a second.
while sent < want and time.time() - last < 1.0:
    try: sent += s.send((req * 1000)[: want - sent]); last = time.time()
    except BlockingIOError: time.sleep(0.01)
    peak = max(peak, rss())
phase1 = (sent // len(req), peak)
# Phase 2: now read everything, writing the rest as the daemon takes it.
got = 0
while got < total * reply and time.time() - start < 120:
    r, w, _ = select.select([s], [s] if sent < want else [], [], 1)
    if r: got += len(s.recv(1 << 20))
    if w: sent += s.send((req * 1000)[: want - sent])
    peak = max(peak, rss())
print(f"phase 1 (never reading): the daemon took {phase1[0]} of {total} requests, RSS {before/1024:.1f} -> peak {phase1[1]/1024:.1f} MB")
print(f"phase 2 (reading): {got // reply} of {total} replies in {time.time()-start:.1f} s, peak RSS {peak/1024:.1f} MB (growth {(peak-before)/1024:.1f} MB)")
