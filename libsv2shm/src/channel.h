/* The producer-consumer channel: SOCK_SEQPACKET messages with fds, and the
 * descriptor ring in shared memory. */
#ifndef SV2SHM_CHANNEL_H
#define SV2SHM_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* Send one message with up to `nfds` fds (SCM_RIGHTS), never blocking
 * (-EAGAIN: the peer's queue is full). Returns 0 or -errno. */
int chan_send(int sock, const void *msg, size_t len, const int *fds, unsigned nfds);

/* Receive one message of exactly `len` bytes with min_fds..max_fds fds
 * (close-on-exec). Extra or missing fds, a short or long message, or a
 * truncated control buffer are -EPROTO (every fd received is closed then).
 * EOF (peer gone) is -EPIPE (a zero-length datagram is -EPROTO); no
 * message within `timeout_ms` (< 0: wait without limit) is -ETIMEDOUT; the
 * receive itself never blocks (-EAGAIN). Returns the number of fds received. */
int chan_recv(int sock, void *msg, size_t len, int *fds, unsigned min_fds, unsigned max_fds, int timeout_ms);

/* Fill a message header. */
void chan_hdr(struct sv2shm_msg_hdr *h, uint16_t type);
/* Check a received header: 0 or -EPROTO. */
int chan_check_hdr(const struct sv2shm_msg_hdr *h, uint16_t type);

static inline uint8_t *ring_entry(struct sv2shm_ring *r, uint32_t entries, uint32_t i)
{
	return r->slots + (size_t)(i & (entries - 1u)) * SV2SHM_RING_ENTRY_SIZE;
}

/* The sequence word of entry i: i + 1 once the producer filled it (wire.h). */
static inline _Atomic uint32_t *ring_entry_seq(struct sv2shm_ring *r, uint32_t entries, uint32_t i)
{
	return (_Atomic uint32_t *)(void *)(ring_entry(r, entries, i) + RING_ENTRY_SEQ);
}

#endif /* SV2SHM_CHANNEL_H */
