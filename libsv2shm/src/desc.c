/* Slice descriptors: 32 little-endian bytes, see ipc.h for the layout. */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "sv2shm/ipc.h"

/* Little-endian fields through memcpy: one load or store each. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LE16(v) __builtin_bswap16(v)
#define LE32(v) __builtin_bswap32(v)
#define LE64(v) __builtin_bswap64(v)
#else
#define LE16(v) (v)
#define LE32(v) (v)
#define LE64(v) (v)
#endif

static inline void put16(uint8_t *p, uint16_t v)
{
	v = LE16(v);
	memcpy(p, &v, sizeof(v));
}
static inline void put32(uint8_t *p, uint32_t v)
{
	v = LE32(v);
	memcpy(p, &v, sizeof(v));
}
static inline void put64(uint8_t *p, uint64_t v)
{
	v = LE64(v);
	memcpy(p, &v, sizeof(v));
}
static inline uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return LE16(v);
}
static inline uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return LE32(v);
}
static inline uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return LE64(v);
}

SV2SHM_API int sv2shm_desc_encode(const struct sv2shm_desc *d, uint8_t out[SV2SHM_DESC_SIZE])
{
	if (!d || !out)
		return -EINVAL;
	out[0] = d->version;
	out[1] = d->kind;
	put16(out + 2, d->slot);
	put32(out + 4, d->generation);
	put64(out + 8, d->region_id);
	put64(out + 16, d->offset);
	put64(out + 24, d->length);
	return 0;
}

SV2SHM_API int sv2shm_desc_decode(const uint8_t in[SV2SHM_DESC_SIZE], struct sv2shm_desc *d)
{
	if (!in || !d)
		return -EINVAL;
	d->version = in[0];
	d->kind = in[1];
	d->slot = get16(in + 2);
	d->generation = get32(in + 4);
	d->region_id = get64(in + 8);
	d->offset = get64(in + 16);
	d->length = get64(in + 24);
	if (d->version != SV2SHM_DESC_VERSION)
		return -EPROTO;
	if (d->kind != SV2SHM_DESC_POOL && d->kind != SV2SHM_DESC_OVERFLOW)
		return -EPROTO;
	return 0;
}
