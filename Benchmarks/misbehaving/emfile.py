"""Opens connections to a daemon that has run out of descriptors and reports its CPU use meanwhile.
Usage: emfile.py SOCKET PID CONNECTIONS SECONDS"""
import os, socket, sys, time

sock, pid, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ticks = os.sysconf("SC_CLK_TCK")

def cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

held = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)  # completes in the listen backlog even when the daemon cannot accept
    held.append(s)
time.sleep(0.5)
start = cpu()
time.sleep(seconds)
used = (cpu() - start) / ticks
print(f"{count} connections held against a 64-descriptor limit: daemon CPU {used:.2f} s in {seconds:.0f} s ({100 * used / seconds:.0f} %)")
for s in held:
    s.close()
probe = socket.socket(socket.AF_UNIX)
probe.settimeout(5)
probe.connect(sock)
started = time.time()
probe.sendall(b"PING\r\n")
print(f"after closing them, a new client's PING: {probe.recv(64)!r} in {1000 * (time.time() - started):.1f} ms")
