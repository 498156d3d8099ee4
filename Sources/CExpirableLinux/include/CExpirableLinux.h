#ifndef CEXPIRABLE_LINUX_H
#define CEXPIRABLE_LINUX_H

/* Linux calls the Swift overlay does not export (they need _GNU_SOURCE), each prefixed. */

/* Whether the symbol at `address` (as dlsym returned it) is code: 1 for a function (STT_FUNC or STT_GNU_IFUNC),
 * 0 for anything else (data, a TLS variable, ...), -1 when the dynamic symbol table cannot tell. */
int CExpirableLinux_symbol_is_function(const void *address);

#endif
