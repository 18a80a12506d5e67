/*
 * Synthetic checksummed Sv2 frames (sv2shm(1), SYNTHETIC FRAMES):
 *
 *   offset  size  field
 *   0       2     extension_type   0x0000 (u16 LE)
 *   2       1     msg_type         0xfe
 *   3       3     msg_length       payload bytes P, 12 .. 2^24-1 (u24 LE)
 *   6       8     sequence number  0, 1, 2, ... in publishing order (u64 LE)
 *   14      4     checksum         FNV-1a 32 of payload bytes 12 .. P-1, i.e. frame bytes 18 .. (u32 LE)
 *   18      P-12  data             splitmix64 stream seeded with the sequence number, 8 bytes LE per step
 */
#include "common.h"

#include <string.h>

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

uint32_t synth_fnv1a32(const uint8_t *p, size_t n)
{
	uint32_t h = 0x811c9dc5u;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x01000193u;
	}
	return h;
}

uint32_t synth_length(uint64_t seq, uint32_t min, uint32_t max)
{
	uint64_t state = seq ^ UINT64_C(0x53563253484d2121); /* "SV2SHM!!" */
	return min + (uint32_t)(splitmix64(&state) % ((uint64_t)max - min + 1));
}

void synth_fill(uint8_t *frame, uint64_t seq, uint32_t payload)
{
	sv2shm_frame_header_encode(frame, SYNTH_EXTENSION_TYPE, SYNTH_MSG_TYPE, payload);
	put_le(frame + SYNTH_SEQ_OFFSET, seq, 8);
	uint8_t *data = frame + SYNTH_DATA_OFFSET;
	size_t n = payload - (SYNTH_DATA_OFFSET - SV2SHM_FRAME_HEADER_SIZE);
	uint64_t state = seq;
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		put_le(data + i, splitmix64(&state), 8);
	if (i < n)
		put_le(data + i, splitmix64(&state), (unsigned)(n - i));
	put_le(frame + SYNTH_SUM_OFFSET, synth_fnv1a32(data, n), 4);
}

const char *synth_check(const uint8_t *frame, size_t len, uint64_t *seq)
{
	if (len < SYNTH_DATA_OFFSET)
		return "too short for a synthetic frame";
	if (get_le(frame + 3, 3) != len - SV2SHM_FRAME_HEADER_SIZE)
		return "msg_length does not match the frame's length";
	if (get_le(frame, 2) != SYNTH_EXTENSION_TYPE || frame[2] != SYNTH_MSG_TYPE)
		return "not a synthetic frame (extension or message type)";
	if (get_le(frame + SYNTH_SUM_OFFSET, 4) != synth_fnv1a32(frame + SYNTH_DATA_OFFSET, len - SYNTH_DATA_OFFSET))
		return "bad checksum";
	*seq = get_le(frame + SYNTH_SEQ_OFFSET, 8);
	return NULL;
}
