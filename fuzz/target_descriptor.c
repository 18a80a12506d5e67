/*
 * `descriptor`: arbitrary bytes as slice descriptors and as region control
 * blocks, the two things a consumer process reads from a fallible peer.
 *
 * Once per process: three producers (64 KiB / 8 slots, 4 KiB / 64 slots,
 * 0 bytes / 1 slot), each with one in-process consumer whose setup message
 * hands over the region's memfds.
 *
 * Per input, on the producer the input picks:
 *   1. a fresh "phantom" consumer P is added (its socket end is never read);
 *      the input writes up to 8 slices (pattern bytes) and publishes them to
 *      P, so their slots are live with P's holder bit (id % 32);
 *   2. a fresh region handle is attached from the region's memfds;
 *   3. each 34-byte record [ctrl][holder][32 descriptor bytes] is fed to
 *      sv2shm_region_open(), after optionally patching fields to the real
 *      region id / a live slot / its generation / offset / length (plus
 *      small deltas), so the checks deep in the function are reached. An
 *      independent model of the region (geometry, every slot's generation,
 *      range and holders) says whether the descriptor is valid: the call must
 *      succeed exactly then, fail with a documented error otherwise, and a
 *      slice it returns must lie inside the mapping, have the published
 *      bytes, and release once (a second release and a copy's release are
 *      refused);
 *   4. every slice opened is released, the handle detaches (0), and removing
 *      P reclaims exactly the slots it still held (mask 0 afterwards).
 * When the first byte says so, part of the input is also written as a
 * control block into a fresh memfd (with input-chosen seals, data memfd
 * size, fd kinds and flags) and given to sv2shm_region_attach(): it must
 * succeed exactly when the block and the fds are valid, and then open a few
 * descriptors and detach cleanly.
 *
 * The model follows the documented contract of sv2shm_region_open(): a
 * descriptor is valid when its format, region id and slot are right, the
 * producer's view in the read-only control block gives the slot's
 * generation to that holder and its range is the slot's record; a second
 * open of a (slot, generation) this handle already has open is -EEXIST (one
 * hold, one slice). A handle attached by hand has no ring: its releases
 * (and refusals) are local only (so no -ENOENT: it has no release records),
 * and the producer's view of every published slot must stay exactly what
 * the producer wrote, whatever the handle does.
 *
 * Input: [geometry+flags] [nslices] [lengths...] ([attach section]) records...
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sv2shm/ipc.h>

#include "fuzz_common.h"
#include "layout.h"
#include "region.h"
#include "targets.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#define NGEOM 3
#define MAX_OPEN 64u
#define MAX_RECORDS 64u

struct slot_model {
	uint32_t gen;      /* generation of the slot's latest claim */
	uint64_t off, len; /* the range the control block holds for it */
	uint32_t holders;  /* holder bits set now */
	uint64_t seq;      /* pattern of the bytes published in it */
	bool published;    /* published this input */
};

struct geom {
	uint64_t cap;
	unsigned slots;
	struct sv2shm_producer *p;
	struct sv2shm_consumer *c;
	int ctl_fd, data_fd;
	uint64_t id;
	struct slot_model m[SV2SHM_MAX_SLOTS];
};

static struct geom geoms[NGEOM] = {
	{.cap = 65536, .slots = 8},
	{.cap = 4096, .slots = 64},
	{.cap = 0, .slots = 1},
};
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static uint64_t seq_counter;

static void init_geoms(void)
{
	for (int g = 0; g < NGEOM; g++) {
		struct geom *G = &geoms[g];
		struct sv2shm_producer_options o;
		memset(&o, 0, sizeof(o));
		o.pool.capacity = G->cap;
		o.pool.slots = G->slots;
		o.pool.policy = SV2SHM_POOL_FAIL;
		o.max_held = G->slots; /* the phantom may hold every slot */
		int r = sv2shm_producer_new(&o, &G->p);
		FZ_CHECK(r == 0, "producer_new: %d (%s)", r, sv2shm_strerror(r));
		int sv[2];
		FZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
		FZ_CHECK(sv2shm_producer_add_consumer(G->p, sv[0]) == 1, "add_consumer");
		r = sv2shm_consumer_new(sv[1], NULL, &G->c);
		FZ_CHECK(r == 0, "consumer_new: %d (%s)", r, sv2shm_strerror(r));
		struct sv2shm_region *rg = sv2shm_consumer_region(G->c);
		G->ctl_fd = sv2shm_region_fd(rg, 0);
		G->data_fd = sv2shm_region_fd(rg, 1);
		FZ_CHECK(G->ctl_fd >= 0 && G->data_fd >= 0 && sv2shm_region_fd(rg, 2) == -EINVAL, "region_fd");
		G->id = rg->id;
		FZ_CHECK(rg->cap == G->cap && rg->nslots == G->slots, "region geometry");
	}
}

void sv2shm_fuzz_descriptor_init(void)
{
	pthread_once(&init_once, init_geoms);
}

/* --- the model's verdict on a descriptor ---------------------------------- */

static bool model_valid(const struct geom *G, const struct sv2shm_desc *d, int decode_rc, unsigned holder)
{
	if (holder < 1 || holder >= 32 || decode_rc != 0 || d->kind != SV2SHM_DESC_POOL || d->region_id != G->id)
		return false;
	if (d->slot >= G->slots || d->offset > G->cap || d->length > G->cap - d->offset)
		return false;
	const struct slot_model *m = &G->m[d->slot];
	return m->gen == d->generation && m->holders != 0 && (m->holders & (UINT32_C(1) << holder)) &&
	       m->off == d->offset && m->len == d->length;
}

static bool open_error_documented(int r)
{
	return r == -EINVAL || r == -EPROTO || r == -ENXIO || r == -ERANGE || r == -ESTALE || r == -EFAULT ||
	       r == -EACCES || r == -ENOENT || r == -EEXIST;
}

struct opened {
	struct sv2shm_slice s;
	unsigned slot, holder;
};

/* --- step 1: publish slices to a fresh phantom consumer -------------------- */

static int setup_phantom(struct geom *G, struct fz *in, int sp[2])
{
	FZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == 0, "socketpair");
	int P = sv2shm_producer_add_consumer(G->p, sp[0]);
	/* Ids are never reused: the holder bit is id % 32 (bit 1 is the real
	 * consumer's, for good). */
	FZ_CHECK(P >= 2 && (P & 31) == 2, "add_consumer: %d (%s)", P, sv2shm_strerror(P));
	struct sv2shm_buffer *b = sv2shm_producer_buffer(G->p);
	struct sv2shm_pool *pool = sv2shm_producer_pool(G->p);
	unsigned k = fz_u8(in) % 9u;
	for (unsigned i = 0; i < k; i++) {
		uint64_t len = fz_range(in, 0, G->cap / 4u + 8u);
		uint64_t seq = ++seq_counter;
		uint8_t *w = sv2shm_buffer_get_writable(b, (size_t)len);
		if (w)
			fz_pattern_fill(w, seq, 0, (size_t)len);
		else
			FZ_CHECK(sv2shm_buffer_last_error(b) == -EAGAIN || sv2shm_buffer_last_error(b) == -EMSGSIZE,
				 "get_writable: %d", sv2shm_buffer_last_error(b));
		struct sv2shm_slice s;
		FZ_CHECK(sv2shm_buffer_get_data_owned(b, &s) == 0, "get_data_owned");
		if (sv2shm_slice_kind(&s) != SV2SHM_SLICE_POOL) {
			FZ_CHECK(sv2shm_slice_kind(&s) == SV2SHM_SLICE_EMPTY, "kind %d", sv2shm_slice_kind(&s));
			sv2shm_slice_release(&s);
			continue;
		}
		unsigned slot = s._slot;
		uint64_t off, l;
		FZ_CHECK(sv2shm_pool_slot_range(pool, slot, &off, &l) == 1 && l == s.len, "slot_range");
		struct slot_model *m = &G->m[slot];
		FZ_CHECK(m->holders == 0, "slot %u claimed while the model holds it", slot);
		m->gen = s._gen;
		m->off = off;
		m->len = l;
		m->seq = seq;
		int r = sv2shm_producer_publish(G->p, &s, &P, 1, 0);
		FZ_CHECK(r == 0, "publish: %d (%s)", r, sv2shm_strerror(r));
		m->holders = UINT32_C(1) << (P & 31);
		m->published = true;
	}
	return P;
}

/* --- step 3: one descriptor record ---------------------------------------- */

/* The producer's view, as a consumer maps it (read-only): a slot published
 * to P this input shows its generation and exactly P's bit, whatever a
 * handle attached by hand opened, refused or released. */
static void check_view(const struct geom *G, const struct sv2shm_region *rg, const char *after)
{
	for (unsigned s = 0; s < G->slots; s++) {
		const struct slot_model *m = &G->m[s];
		if (!m->published)
			continue;
		uint64_t st = atomic_load(&((struct sv2shm_ctl *)(uintptr_t)rg->ctl)->slots[s].state);
		FZ_CHECK(st == SV2SHM_STATE(m->gen, m->holders),
			 "after %s: slot %u's state word is gen %u holders %#x, the producer published gen %u to %#x",
			 after, s, SV2SHM_STATE_GEN(st), SV2SHM_STATE_HOLDERS(st), m->gen, m->holders);
	}
}

static void do_record(struct geom *G, struct sv2shm_region *rg, struct fz *in, unsigned pbit, struct opened *op,
		      unsigned *nop)
{
	uint8_t ctrl = fz_u8(in), hsel = fz_u8(in);
	uint8_t raw[SV2SHM_DESC_SIZE];
	fz_bytes(in, raw, sizeof(raw));
	struct sv2shm_desc d;
	int drc = sv2shm_desc_decode(raw, &d);
	if (drc == 0) {
		uint8_t again[SV2SHM_DESC_SIZE];
		FZ_CHECK(sv2shm_desc_encode(&d, again) == 0 && memcmp(again, raw, sizeof(raw)) == 0,
			 "decode/encode round trip");
	} else {
		FZ_CHECK(drc == -EPROTO, "desc_decode: %d", drc);
		d.version = raw[0];
		d.kind = raw[1];
		d.slot = (uint16_t)(raw[2] | raw[3] << 8);
		memcpy(&d.generation, raw + 4, 4); /* the little-endian host's own order */
		memcpy(&d.region_id, raw + 8, 8);
		memcpy(&d.offset, raw + 16, 8);
		memcpy(&d.length, raw + 24, 8);
	}
	/* Patch fields to real values so the deeper checks are reached. */
	if (ctrl & 1u) {
		d.version = SV2SHM_DESC_VERSION;
		d.kind = (ctrl & 0x80u) ? d.kind % 2u : SV2SHM_DESC_POOL;
	}
	if (ctrl & 2u)
		d.region_id = G->id;
	const struct slot_model *m = NULL;
	if (ctrl & 4u) {
		d.slot = (uint16_t)(d.slot % G->slots);
		m = &G->m[d.slot];
	}
	if (m && (ctrl & 8u))
		d.generation = m->gen + (uint32_t)(int32_t)((int8_t)raw[4] >> 5);
	if (m && (ctrl & 16u))
		d.offset = m->off + (uint64_t)(int64_t)((int8_t)raw[16] >> 4);
	if (m && (ctrl & 32u))
		d.length = m->len + (uint64_t)(int64_t)((int8_t)raw[24] >> 4);
	unsigned holder = (hsel & 0x80u) ? (hsel & 0x3fu) : pbit;
	uint8_t enc[SV2SHM_DESC_SIZE];
	sv2shm_desc_encode(&d, enc);
	int vrc = sv2shm_desc_decode(enc, &d);
	bool valid = model_valid(G, &d, vrc, holder);

	/* One open slice per (slot, generation) and handle. */
	bool open_already = false;
	for (unsigned i = 0; i < *nop; i++)
		if (op[i].slot == d.slot && op[i].s._gen == d.generation)
			open_already = true;

	struct sv2shm_slice s;
	memset(&s, 0x5a, sizeof(s));
	int r = sv2shm_region_open(rg, enc, holder, &s);
	FZ_CHECK(r == (valid && open_already ? -EEXIST : r) && (r == 0) == (valid && !open_already),
		 "region_open(v%u kind %u slot %u gen %u id %s off %llu len %llu, holder %u) = %d (%s); the model "
		 "says %s",
		 d.version, d.kind, d.slot, d.generation, d.region_id == G->id ? "ok" : "other",
		 (unsigned long long)d.offset, (unsigned long long)d.length, holder, r, sv2shm_strerror(r),
		 !valid ? "invalid" : open_already ? "-EEXIST (already open)" : "valid");
	if (r != 0) {
		FZ_CHECK(open_error_documented(r), "region_open: undocumented error %d (%s)", r, sv2shm_strerror(r));
		return;
	}
	const struct slot_model *sm = &G->m[d.slot];
	FZ_CHECK(sv2shm_slice_kind(&s) == SV2SHM_SLICE_SHARED && s.len == d.length, "opened slice kind %d len %zu",
		 sv2shm_slice_kind(&s), s.len);
	FZ_CHECK(s.len == 0 ? s.data == NULL : (s.data == rg->data + d.offset && d.offset + s.len <= rg->cap),
		 "opened slice outside the mapping");
	if (d.offset == sm->off && d.length == sm->len) {
		long bad = fz_pattern_check(s.data, sm->seq, 0, s.len);
		FZ_CHECK(bad < 0, "slot %u: published bytes differ at %ld in the consumer's mapping", d.slot, bad);
	}

	if ((ctrl & 0x40u) || *nop == MAX_OPEN) {
		struct sv2shm_slice copy = s;
		r = sv2shm_slice_release(&s);
		FZ_CHECK(r == 0, "release of an opened slice: %d (%s)", r, sv2shm_strerror(r));
		FZ_CHECK(sv2shm_slice_release(&s) == -EALREADY, "second release");
		r = sv2shm_slice_release(&copy);
		FZ_CHECK(r == -EALREADY || r == -ESTALE, "release of a copy: %d", r);
		return;
	}
	op[(*nop)++] = (struct opened){s, d.slot, holder};
}

/* --- the attach section ----------------------------------------------------- */

static int make_memfd(const char *name, const void *bytes, size_t n, uint64_t size, unsigned seals)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	FZ_CHECK(fd >= 0, "memfd_create");
	FZ_CHECK(ftruncate(fd, (off_t)size) == 0, "ftruncate(%llu)", (unsigned long long)size);
	if (n)
		FZ_CHECK(pwrite(fd, bytes, n, 0) == (ssize_t)n, "pwrite");
	if (seals)
		FZ_CHECK(fcntl(fd, F_ADD_SEALS, (int)seals) == 0, "F_ADD_SEALS");
	return fd;
}

static const unsigned seal_bits[] = {F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_FUTURE_WRITE};

static unsigned pick_seals(uint8_t b)
{
	unsigned s = 0;
	for (unsigned i = 0; i < 4u; i++)
		if (b & (1u << i))
			s |= seal_bits[i];
	return s;
}

static void attach_section(struct fz *in)
{
	uint8_t fl = fz_u8(in), fl2 = fz_u8(in);
	struct sv2shm_ctl *ctl = aligned_alloc(SV2SHM_CACHE_LINE, sizeof(*ctl));
	FZ_CHECK(ctl != NULL, "aligned_alloc");
	memset(ctl, 0, sizeof(*ctl));
	uint8_t head[32], tmpl[32], mask[8];
	fz_bytes(in, head, sizeof(head));
	fz_bytes(in, mask, sizeof(mask));
	fz_bytes(in, tmpl, sizeof(tmpl));
	memcpy(ctl, head, sizeof(head));
	memcpy((uint8_t *)ctl + offsetof(struct sv2shm_ctl, mask), mask, sizeof(mask));
	for (unsigned i = 0; i < SV2SHM_MAX_SLOTS; i++) {
		memcpy(&ctl->slots[i], tmpl, sizeof(tmpl));
		((uint8_t *)&ctl->slots[i])[0] ^= (uint8_t)i; /* vary the holder bits a little */
	}
	if (fl & 1u)
		ctl->magic = SV2SHM_CTL_MAGIC;
	if (fl & 2u)
		ctl->version = SV2SHM_CTL_VERSION;
	if (fl & 4u)
		ctl->ctl_size = (uint32_t)sizeof(*ctl);
	if (fl & 8u)
		ctl->nslots = 1u + ctl->nslots % 64u;
	if (fl & 16u)
		ctl->capacity = ctl->capacity % 65537u;
	else if (fl & 32u)
		ctl->capacity = (UINT64_C(1) << 32) - (ctl->capacity & 1u);
	uint64_t data_size = (fl & 64u) ? ctl->capacity : fz_u16(in);
	if (data_size > (UINT64_C(1) << 33))
		data_size = UINT64_C(1) << 33;
	bool ctl_size_ok = !(fl & 128u);
	uint64_t ctl_file = ctl_size_ok ? sizeof(*ctl) : fz_u16(in);
	unsigned ctl_seals = (fl2 & 1u) ? pick_seals(fz_u8(in)) : REGION_CTL_SEALS;
	unsigned data_seals = (fl2 & 2u) ? pick_seals(fz_u8(in))
					 : (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL | F_SEAL_FUTURE_WRITE);
	unsigned flags = (fl2 >> 2) & 3u; /* 0, WRITABLE, 2 and 3 unknown */
	unsigned fdkind = (fl2 >> 4) & 3u; /* 0: memfds; 1: ctl -1; 2: data closed; 3: ctl a pipe */

	int cfd = make_memfd("fuzz-ctl", ctl, ctl_file < sizeof(*ctl) ? (size_t)ctl_file : sizeof(*ctl), ctl_file,
			     ctl_seals);
	int dfd = make_memfd("fuzz-data", NULL, 0, data_size, data_seals);
	int pfd[2] = {-1, -1};
	int use_c = cfd, use_d = dfd;
	if (fdkind == 1) {
		use_c = -1;
	} else if (fdkind == 2) {
		use_d = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
		close(use_d); /* a number that is not open now */
	} else if (fdkind == 3) {
		FZ_CHECK(pipe2(pfd, O_CLOEXEC) == 0, "pipe2");
		use_c = pfd[0];
	}

	bool valid = fdkind == 0 && flags <= 1u && ctl_file == sizeof(*ctl) &&
		     (ctl_seals & REGION_CTL_SEALS) == REGION_CTL_SEALS &&
		     (data_seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
			     (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) &&
		     ((flags & SV2SHM_ATTACH_WRITABLE) ? !(data_seals & F_SEAL_FUTURE_WRITE)
						       : (data_seals & F_SEAL_FUTURE_WRITE) != 0) &&
		     ctl->magic == SV2SHM_CTL_MAGIC && ctl->version == SV2SHM_CTL_VERSION &&
		     ctl->ctl_size == sizeof(*ctl) && ctl->nslots >= 1 && ctl->nslots <= 64 &&
		     ctl->capacity <= (UINT64_C(1) << 32) && data_size == ctl->capacity;

	struct sv2shm_region *rg = NULL;
	int r = sv2shm_region_attach(use_c, use_d, flags, &rg);
	FZ_CHECK((r == 0) == valid, "region_attach(fdkind %u, flags %u, ctl file %llu, seals %#x/%#x, cap %llu, "
				    "data %llu, nslots %u) = %d (%s), expected %s",
		 fdkind, flags, (unsigned long long)ctl_file, ctl_seals, data_seals,
		 (unsigned long long)ctl->capacity, (unsigned long long)data_size, ctl->nslots, r, sv2shm_strerror(r),
		 valid ? "success" : "an error");
	if (r != 0) {
		FZ_CHECK(r == -EINVAL || r == -EBADF || r == -EPROTO || r == -EMSGSIZE || r == -EPERM || r == -EACCES ||
				 r == -ENOMEM,
			 "region_attach: undocumented error %d (%s)", r, sv2shm_strerror(r));
	} else {
		FZ_CHECK(sv2shm_region_fd(rg, 0) >= 0 && sv2shm_region_fd(rg, 1) >= 0, "region_fd");
		/* Descriptors against the input's own slot records: whatever they
		 * say, an opened slice lies inside the mapping. */
		for (unsigned i = 0; i < 4 && !fz_empty(in); i++) {
			uint8_t raw[SV2SHM_DESC_SIZE];
			fz_bytes(in, raw, sizeof(raw));
			unsigned holder = 1u + raw[1] % 31u;
			if (raw[0] & 0x80u) {
				/* Name a slot record of the block exactly. */
				unsigned slot = raw[3] % (unsigned)ctl->nslots;
				struct sv2shm_desc d = {.slot = (uint16_t)slot,
							.generation = SV2SHM_STATE_GEN(ctl->slots[slot].state),
							.offset = ctl->slots[slot].offset,
							.length = ctl->slots[slot].length};
				sv2shm_desc_encode(&d, raw);
			}
			raw[0] = SV2SHM_DESC_VERSION;
			raw[1] = SV2SHM_DESC_POOL;
			memcpy(raw + 8, &ctl->region_id, 8);
			struct sv2shm_slice s;
			int o = sv2shm_region_open(rg, raw, holder, &s);
			if (o != 0) {
				FZ_CHECK(open_error_documented(o), "region_open: %d", o);
				continue;
			}
			FZ_CHECK(s.len <= rg->cap && (s.len == 0 || (s.data >= rg->data && s.data + s.len <= rg->data + rg->cap)),
				 "slice outside the fuzzed region's mapping");
			if (s.len) {
				volatile uint8_t first = s.data[0], last = s.data[s.len - 1];
				(void)first;
				(void)last;
			}
			o = sv2shm_slice_release(&s);
			FZ_CHECK(o == 0, "release of a slice of the fuzzed region: %d (%s)", o, sv2shm_strerror(o));
		}
		r = sv2shm_region_detach(rg);
		FZ_CHECK(r == 0, "detach of the fuzzed region: %d", r);
	}
	close(cfd);
	close(dfd);
	if (pfd[0] >= 0) {
		close(pfd[0]);
		close(pfd[1]);
	}
	free(ctl);
}

/* --- the target --------------------------------------------------------------- */

int sv2shm_fuzz_descriptor(const uint8_t *data, size_t size)
{
	sv2shm_fuzz_descriptor_init();
	struct fz in;
	fz_init(&in, data, size);
	uint8_t first = fz_u8(&in);
	struct geom *G = &geoms[first % NGEOM];

	int sp[2];
	int P = setup_phantom(G, &in, sp);
	if (first & 0x80u)
		attach_section(&in);

	struct sv2shm_region *rg;
	int r = sv2shm_region_attach(G->ctl_fd, G->data_fd, 0, &rg);
	FZ_CHECK(r == 0, "region_attach of the real region: %d (%s)", r, sv2shm_strerror(r));
	FZ_CHECK(sv2shm_region_attach(G->ctl_fd, G->data_fd, SV2SHM_ATTACH_WRITABLE, &(struct sv2shm_region *){0}) ==
			 -EACCES,
		 "a writable attach of write-sealed data");

	struct opened *op = calloc(MAX_OPEN, sizeof(*op));
	FZ_CHECK(op != NULL, "calloc");
	unsigned nop = 0;
	check_view(G, rg, "publishing");
	for (unsigned i = 0; i < MAX_RECORDS && in.n >= 2; i++) {
		do_record(G, rg, &in, (unsigned)P & 31u, op, &nop);
		check_view(G, rg, "a record");
	}

	/* Release what is still open: every slice is its own (slot, generation),
	 * released once, locally (no ring: the producer's view stays). */
	for (unsigned i = 0; i < nop; i++) {
		struct sv2shm_slice copy = op[i].s;
		r = sv2shm_slice_release(&op[i].s);
		FZ_CHECK(r == 0, "release of an opened slice: %d (%s)", r, sv2shm_strerror(r));
		r = sv2shm_slice_release(&copy);
		FZ_CHECK(r == -EALREADY || r == -ESTALE, "release of a copy: %d", r);
	}
	check_view(G, rg, "the releases");
	free(op);
	r = sv2shm_region_detach(rg);
	FZ_CHECK(r == 0, "region_detach after every opened slice was released returned %d (%s)", r,
		 sv2shm_strerror(r));

	int held = 0;
	for (unsigned s = 0; s < G->slots; s++) {
		if (G->m[s].holders & (UINT32_C(1) << (P & 31)))
			held++;
		G->m[s].holders = 0;
		G->m[s].published = false;
	}
	r = sv2shm_producer_remove_consumer(G->p, P);
	FZ_CHECK(r == held, "remove_consumer reclaimed %d slots, the phantom held %d", r, held);
	close(sp[1]);
	struct sv2shm_pool_stats st;
	sv2shm_pool_stats(sv2shm_producer_pool(G->p), &st);
	FZ_CHECK(st.mask == 0, "mask %#llx after the phantom consumer was removed", (unsigned long long)st.mask);
	return 0;
}
