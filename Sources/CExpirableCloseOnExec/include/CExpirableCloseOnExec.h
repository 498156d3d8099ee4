#ifndef CEXPIRABLE_CLOSE_ON_EXEC_H
#define CEXPIRABLE_CLOSE_ON_EXEC_H

/* Linked into the daemon's executable and expirablectl's only. Every descriptor the daemon holds is close-on-exec,
 * so that a program an inline plugin runs (popen, system, the `command` plugin's child) gets none of its clients'
 * connections, its event loops or its files; and the command `expirablectl exec` runs gets none of its connections
 * to the daemon (it could read the updates meant for expirablectl, or send requests as expirablectl's executable)
 * nor its event loops, while the descriptors expirablectl was started with pass on as before. SwiftNIO accepts
 * connections (accept4 with SOCK_NONBLOCK), makes sockets and creates its epoll descriptors without close-on-exec
 * and gives no access to a channel's descriptor; this target defines
 * accept, accept4, socket and epoll_create for the executable's own code (hidden: neither exported to plugins nor
 * seen by shared libraries), each the kernel's call with close-on-exec added. */

/* Sets close-on-exec on every descriptor from `from` up (those the daemon was started with). 0 or an errno value. */
int CExpirableCloseOnExec_mark_from(int from);

#endif
