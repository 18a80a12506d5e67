/* The producer-consumer channel: SOCK_SEQPACKET messages with fds, and the
 * descriptor ring in shared memory. */
#ifndef SV2SHM_CHANNEL_H
#define SV2SHM_CHANNEL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* A pool descriptor written straight into a ring entry: the bytes
 * sv2shm_desc_encode() writes for {SV2SHM_DESC_VERSION, SV2SHM_DESC_POOL,
 * slot, gen, region_id, offset, length}, as four 8-byte stores with no
 * struct in between — the single-consumer publish's path from a free slot
 * to a filled entry is the round trip's critical path on the producer's
 * side (test_ipc_region checks both encoders write the same bytes). */
static inline void ring_put_pool_desc(uint8_t *e, uint16_t slot, uint32_t gen, uint64_t region_id, uint64_t offset,
				      uint64_t length)
{
	uint64_t w[4] = {(uint64_t)SV2SHM_DESC_VERSION | ((uint64_t)SV2SHM_DESC_POOL << 8) | ((uint64_t)slot << 16) |
				 ((uint64_t)gen << 32),
			 region_id, offset, length};
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	for (int i = 0; i < 4; i++)
		w[i] = __builtin_bswap64(w[i]);
#endif
	memcpy(e, w, sizeof(w));
}

/* The fields of a ring entry read back as the four 8-byte words
 * ring_put_pool_desc() writes (w[0]: version, kind, slot and generation;
 * then region_id, offset, length) — the consumer's way to a pool slice
 * without decoding into a struct first. Nothing is checked here. */
static inline void ring_get_words(const uint8_t *e, uint64_t w[4])
{
	memcpy(w, e, 4 * sizeof(uint64_t));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	for (int i = 0; i < 4; i++)
		w[i] = __builtin_bswap64(w[i]);
#endif
}

/* w[0] of a pool descriptor of this format version, slot and generation aside. */
#define RING_POOL_WORD0 ((uint64_t)SV2SHM_DESC_VERSION | ((uint64_t)SV2SHM_DESC_POOL << 8))

#endif /* SV2SHM_CHANNEL_H */
