#ifndef CEXPIRABLEPREFETCH_H
#define CEXPIRABLEPREFETCH_H

/// Asks the CPU to bring the cache line holding `address` in for reading, without waiting for it. A hint: it
/// never faults, whatever `address` is (a keyed family reads ahead through slots it has not locked).
static inline void CExpirablePrefetch_read(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
