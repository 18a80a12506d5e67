/* Slice descriptors: 32 little-endian bytes, see ipc.h for the layout. */
#include <errno.h>

#include "internal.h"
#include "sv2shm/ipc.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}
static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
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
