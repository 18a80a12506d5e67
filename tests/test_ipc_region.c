/*
 * Shared regions and descriptors across processes.
 *
 *   release_cross_process   a consumer process's release frees the slot the
 *                           producer sees; a second release through a copy is
 *                           -EALREADY, a release of a copy after the slot was
 *                           reused is -ESTALE; with fan-out the slot frees only
 *                           when the last holder lets go; the mask stays
 *                           intact through every refused release.
 *   region_open_rejects     every malformed descriptor class gets its own code
 *                           from sv2shm_region_open() (-EPROTO, -ENXIO, -ERANGE,
 *                           -ESTALE, -EFAULT incl. offset+length wrapping,
 *                           -ENOENT, -EACCES, -EINVAL) and changes nothing;
 *                           out-of-bounds ranges are refused even when a peer
 *                           forged the slot record in the control block to
 *                           match them.
 *   region_attach_rejects   sv2shm_region_attach() refuses forged or broken
 *                           memfds: garbage control block (-EPROTO), sizes
 *                           (-EMSGSIZE), missing seals (-EPERM), WRITABLE on the
 *                           sealed data (-EACCES), bad fds (-EBADF/-EINVAL), and
 *                           leaks no fd doing so.
 *   consumer_cannot_modify  a consumer process cannot shrink/grow the memfds,
 *                           punch holes, write(), map the data writable (also
 *                           through /proc/self/fd), mprotect its read-only
 *                           mappings writable, or add seals; its MAP_PRIVATE
 *                           copy-on-write changes nothing the producer sees.
 *   recv_rejects_ring_garbage  descriptors written straight into a consumer's
 *                           ring (a producer gone bad) and broken alloc-mode
 *                           messages make sv2shm_consumer_recv() return the
 *                           validation error and go on; bad ring indices are
 *                           -EPROTO.
 *   ring_full               a full ring is -EAGAIN and nothing is published to
 *                           anyone (no holder bit, no descriptor).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "ipc_common.h"
#include "channel.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

#define SEED UINT64_C(0xabcdef0123)
#define CAP (64 * 1024)
#define ALL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
#define CTL_SEALS (ALL_SEALS | F_SEAL_FUTURE_WRITE) /* the control block is write-sealed too */

static int teardown(void **state)
{
	(void)state;
	ipc_kill_children();
	alarm(0);
	return 0;
}

static int setup(void **state)
{
	(void)state;
	alarm(240);
	return 0;
}

static struct sv2shm_producer *new_producer_waiting(int policy, unsigned slots, uint64_t cap, unsigned ring_entries,
						   int wait_timeout_ms)
{
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = cap;
	o.pool.slots = slots;
	o.pool.policy = policy;
	o.pool.wait_timeout_ms = wait_timeout_ms;
	o.ring_entries = ring_entries;
	o.max_held = slots; /* limits are tested in test_ipc_hostile.c */
	o.on_limit = SV2SHM_LIMIT_REFUSE;
	struct sv2shm_producer *p = NULL;
	int r = sv2shm_producer_new(&o, &p);
	if (r != 0)
		fail_msg("sv2shm_producer_new: %d (%s)", r, sv2shm_strerror(r));
	ipc_hold(p);
	return p;
}

static struct sv2shm_producer *new_producer(int policy, unsigned slots, uint64_t cap, unsigned ring_entries)
{
	return new_producer_waiting(policy, slots, cap, ring_entries, 5000);
}

/* A consumer in this very process (the setup message waits in the socket). */
static struct sv2shm_consumer *inproc_consumer(struct sv2shm_producer *p, int expect_id)
{
	int sv[2];
	assert_int_equal(ipc_seqpacket_pair(sv), 0);
	assert_int_equal(sv2shm_producer_add_consumer(p, sv[0]), expect_id);
	struct sv2shm_consumer *c = NULL;
	int r = sv2shm_consumer_new(sv[1], NULL, &c);
	if (r != 0)
		fail_msg("sv2shm_consumer_new: %d (%s)", r, sv2shm_strerror(r));
	ipc_hold(c);
	assert_int_equal(sv2shm_consumer_id(c), expect_id);
	return c;
}

/* Make a slice with the pattern of `seq` and return the slot bit it took. */
static uint64_t make(struct sv2shm_producer *p, uint64_t seq, size_t len, struct sv2shm_slice *s)
{
	uint64_t before = ipc_mask(p);
	int r = ipc_make_slice(p, pat_key(SEED, seq), len, s);
	if (r != 0)
		fail_msg("making slice %" PRIu64 ": %d (%s)", seq, r, sv2shm_strerror(r));
	assert_int_equal(sv2shm_slice_kind(s), SV2SHM_SLICE_POOL);
	uint64_t bit = ipc_mask(p) & ~before;
	assert_int_equal(__builtin_popcountll(bit), 1);
	return bit;
}

/* make(), in slot `slot`: the slot's next generation (ipc_make_slice_in()). */
static uint64_t make_in(struct sv2shm_producer *p, uint64_t seq, size_t len, unsigned slot, struct sv2shm_slice *s)
{
	int r = ipc_make_slice_in(p, pat_key(SEED, seq), len, slot, s);
	if (r != 0)
		fail_msg("making slice %" PRIu64 " in slot %u: %d (%s)", seq, slot, r, sv2shm_strerror(r));
	assert_int_equal(sv2shm_slice_kind(s), SV2SHM_SLICE_POOL);
	assert_true(ipc_mask(p) & (UINT64_C(1) << slot));
	return UINT64_C(1) << slot;
}

static unsigned bit_index(uint64_t bit)
{
	return (unsigned)__builtin_ctzll(bit);
}

/* --- 2. release from another process ------------------------------------------ */

static void test_release_cross_process(void **state)
{
	(void)state;
	struct cmd_child ax, ay;
	int sx, cx, sy, cy;
	pid_t px = spawn_cmd_consumer(&sx, &cx, &ax, SEED);
	pid_t py = spawn_cmd_consumer(&sy, &cy, &ay, SEED);
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 0);
	int idx = sv2shm_producer_add_consumer(p, sx), idy = sv2shm_producer_add_consumer(p, sy);
	assert_int_equal(idx, 1);
	assert_int_equal(idy, 2);

	struct sv2shm_slice a, b, c, d;
	uint64_t bit_a = make(p, 0, 1000, &a);
	assert_int_equal(sv2shm_producer_publish(p, &a, &idx, 1, 0), 0);
	assert_int_equal(sv2shm_slice_kind(&a), SV2SHM_SLICE_NONE);
	assert_int_equal(cmd(cx, CMD(OP_RECV, 0, 0)), 1);
	assert_int_equal(ipc_mask(p), bit_a); /* held by the consumer now */
	assert_int_equal(cmd(cx, CMD(OP_COPY, 0, 1)), 0);
	/* The release in the other process frees the slot. */
	assert_int_equal(cmd(cx, CMD(OP_RELEASE, 0, 0)), 0);
	assert_int_equal(ipc_mask(p), 0);
	/* Double release through a copy: refused, and the mask is not
	 * re-marked (the seed's XOR would set the bit again). */
	assert_int_equal(cmd(cx, CMD(OP_RELEASE, 1, 0)), -EALREADY);
	assert_int_equal(ipc_mask(p), 0);

	/* The slot is reused (new generation): the old copy is stale. */
	uint64_t bit_b = make_in(p, 1, 2000, bit_index(bit_a), &b);
	assert_int_equal(sv2shm_producer_publish(p, &b, &idx, 1, 0), 0);
	assert_int_equal(cmd(cx, CMD(OP_RECV, 2, 1)), 1);
	assert_int_equal(cmd(cx, CMD(OP_RELEASE, 1, 0)), -ESTALE);
	assert_int_equal(ipc_mask(p), bit_b); /* the live slice keeps its slot */
	assert_int_equal(cmd(cx, CMD(OP_CHECK, 2, 0)), 0);
	assert_int_equal(cmd(cx, CMD(OP_COPY, 2, 3)), 0);
	assert_int_equal(cmd(cx, CMD(OP_RELEASE, 2, 0)), 0);
	assert_int_equal(ipc_mask(p), 0);
	assert_int_equal(cmd(cx, CMD(OP_RELEASE, 3, 0)), -EALREADY);
	assert_int_equal(ipc_mask(p), 0);

	/* Fan-out: C to both consumers, D to Y only. */
	uint64_t bit_c = make(p, 2, 3000, &c);
	uint64_t bit_d = make(p, 3, 4000, &d);
	int both[2] = {idx, idy};
	assert_int_equal(sv2shm_producer_publish(p, &c, both, 2, 0), 0);
	assert_int_equal(sv2shm_producer_publish(p, &d, &idy, 1, 0), 0);
	assert_int_equal(cmd(cx, CMD(OP_RECV, 4, 2)), 1);
	assert_int_equal(cmd(cy, CMD(OP_RECV, 0, 2)), 1);
	assert_int_equal(cmd(cy, CMD(OP_RECV, 1, 3)), 1);
	assert_int_equal(ipc_mask(p), bit_c | bit_d);
	assert_int_equal(cmd(cx, CMD(OP_COPY, 4, 5)), 0);
	assert_int_equal(cmd(cx, CMD(OP_RELEASE, 4, 0)), 0);
	assert_int_equal(ipc_mask(p), bit_c | bit_d); /* Y still holds C */
	assert_int_equal(cmd(cx, CMD(OP_RELEASE, 5, 0)), -EALREADY);
	assert_int_equal(ipc_mask(p), bit_c | bit_d);
	assert_int_equal(cmd(cy, CMD(OP_CHECK, 0, 0)), 0);
	assert_int_equal(cmd(cy, CMD(OP_RELEASE, 0, 0)), 0);
	assert_int_equal(ipc_mask(p), bit_d);
	assert_int_equal(cmd(cy, CMD(OP_CHECK, 1, 0)), 0);
	assert_int_equal(cmd(cy, CMD(OP_RELEASE, 1, 0)), 0);
	assert_int_equal(ipc_mask(p), 0);

	/* The pool is consistent: it hands out and frees slots as usual. */
	struct sv2shm_slice e;
	make(p, 4, 10, &e);
	assert_int_equal(sv2shm_slice_release(&e), 0);
	struct sv2shm_pool_stats st = ipc_stats(p);
	assert_int_equal(st.mask, 0);
	assert_int_equal(st.refused_releases, 0);

	assert_int_equal(cmd(cx, CMD(OP_EXIT, 0, 0)), 0);
	assert_int_equal(cmd(cy, CMD(OP_EXIT, 0, 0)), 0);
	assert_child_ok(px, 10000);
	assert_child_ok(py, 10000);
	close(cx);
	close(cy);
	destroy_producer(p);
}

/* --- 3. descriptors --------------------------------------------------------------- */

/* Open a descriptor; expect `want`; nothing in the control block changes. */
static void expect_open(struct sv2shm_region *r, const struct sv2shm_ctl *ctl, const struct sv2shm_desc *d,
			unsigned holder, int want, const char *what)
{
	uint8_t raw[SV2SHM_DESC_SIZE];
	encode(d, raw);
	uint64_t mask = atomic_load(&ctl->mask);
	uint64_t states[SV2SHM_MAX_SLOTS];
	for (unsigned i = 0; i < ctl->nslots; i++)
		states[i] = atomic_load(&ctl->slots[i].state);
	struct sv2shm_slice s;
	memset(&s, 0, sizeof(s));
	int got = sv2shm_region_open(r, raw, holder, &s);
	if (got != want)
		fail_msg("%s: sv2shm_region_open returned %d (%s), expected %d (%s)", what, got, sv2shm_strerror(got),
			 want, sv2shm_strerror(want));
	assert_int_equal(atomic_load(&ctl->mask), mask);
	for (unsigned i = 0; i < ctl->nslots; i++)
		assert_int_equal(atomic_load(&ctl->slots[i].state), states[i]);
	if (want < 0)
		assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_NONE);
}

static void test_region_open_rejects(void **state)
{
	(void)state;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 0);
	struct sv2shm_consumer *c1 = inproc_consumer(p, 1);
	struct sv2shm_consumer *c2 = inproc_consumer(p, 2);
	/* Consumer 1's own attachment (its releases reach the producer through
	 * its ring; a region attached by hand would release locally only). */
	struct sv2shm_region *cr = sv2shm_consumer_region(c1);
	assert_non_null(cr);
	int cfd = sv2shm_region_fd(cr, 0), dfd = sv2shm_region_fd(cr, 1);
	assert_true(cfd >= 0 && dfd >= 0);
	assert_int_equal(sv2shm_region_fd(cr, 2), -EINVAL);
	assert_int_equal(sv2shm_region_fd(NULL, 0), -EINVAL);
	{
		struct sv2shm_region *byhand = NULL;
		assert_int_equal(sv2shm_region_attach(cfd, dfd, 0, &byhand), 0);
		assert_int_equal(sv2shm_region_detach(byhand), 0);
	}
	struct sv2shm_region *r = cr;
	const struct sv2shm_ctl *ctl = mmap(NULL, sizeof(struct sv2shm_ctl), PROT_READ, MAP_SHARED, cfd, 0);
	assert_true(ctl != MAP_FAILED);
	const unsigned nslots = ctl->nslots;
	assert_int_equal(nslots, 4);
	assert_int_equal(ctl->capacity, CAP);

	/* X: published to consumer 1 only (left in its ring). Z: kept by the
	 * producer (holder bit 0 only). */
	struct sv2shm_slice x, z;
	unsigned sx = bit_index(make(p, 10, 1000, &x));
	int id1 = 1;
	assert_int_equal(sv2shm_producer_publish(p, &x, &id1, 1, 0), 0);
	unsigned sz = bit_index(make(p, 11, 500, &z));
	assert_int_equal(sv2shm_producer_process(p), 0); /* Z's (gen, 1), as a tool would see it */
	assert_int_equal(SV2SHM_STATE_HOLDERS(atomic_load(&ctl->slots[sz].state)), 1u);
	uint64_t stx = atomic_load(&ctl->slots[sx].state);
	assert_int_equal(SV2SHM_STATE_HOLDERS(stx), 1u << 1);
	const struct sv2shm_desc good = {.version = SV2SHM_DESC_VERSION,
					 .kind = SV2SHM_DESC_POOL,
					 .slot = (uint16_t)sx,
					 .generation = SV2SHM_STATE_GEN(stx),
					 .region_id = ctl->region_id,
					 .offset = ctl->slots[sx].offset,
					 .length = ctl->slots[sx].length};
	assert_int_equal(good.length, 1000);
	struct sv2shm_desc d;

#define BAD(field, value, want)                                                                                     \
	do {                                                                                                        \
		d = good;                                                                                           \
		d.field = (value);                                                                                  \
		expect_open(r, ctl, &d, 1, (want), #field " = " #value);                                            \
	} while (0)
	BAD(version, 0, -EPROTO);
	BAD(version, 2, -EPROTO);
	BAD(version, 255, -EPROTO);
	BAD(kind, SV2SHM_DESC_OVERFLOW, -EPROTO);
	BAD(kind, 2, -EPROTO);
	BAD(kind, 255, -EPROTO);
	BAD(region_id, good.region_id ^ 1u, -ENXIO);
	BAD(region_id, 0, -ENXIO);
	BAD(region_id, ~good.region_id, -ENXIO);
	BAD(slot, (uint16_t)nslots, -ERANGE);
	BAD(slot, 63, -ERANGE);
	BAD(slot, 64, -ERANGE);
	BAD(slot, 0xffff, -ERANGE);
	BAD(generation, good.generation + 1u, -ESTALE);
	BAD(generation, good.generation - 1u, -ESTALE);
	BAD(generation, 0xffffffffu, -ESTALE);
	BAD(offset, (uint64_t)CAP + 1u, -EFAULT);
	BAD(offset, UINT64_MAX, -EFAULT);
	BAD(offset, (uint64_t)CAP, -EFAULT);     /* 1000 bytes from the end of the data */
	BAD(offset, good.offset + 1u, -EFAULT);  /* inside the data, not the slot's bytes */
	BAD(length, (uint64_t)CAP + 1u, -EFAULT);
	BAD(length, UINT64_MAX, -EFAULT);
	BAD(length, good.length - 1u, -EFAULT);
	BAD(length, good.length + 1u, -EFAULT);
	BAD(length, 0, -EFAULT);
	/* offset + length wraps around 2^64 to a small number */
	d = good;
	d.offset = 16;
	d.length = UINT64_MAX - 8u;
	expect_open(r, ctl, &d, 1, -EFAULT, "offset 16 + length 2^64-9 (wraps)");
	d = good;
	d.offset = UINT64_MAX - 4u;
	d.length = 8;
	expect_open(r, ctl, &d, 1, -EFAULT, "offset 2^64-5 + length 8 (wraps)");
	d = good;
	d.offset = UINT64_MAX;
	d.length = UINT64_MAX;
	expect_open(r, ctl, &d, 1, -EFAULT, "offset and length 2^64-1");
	/* No peer can scribble on the control block: it is write-sealed, so a
	 * writable mapping, a write and a hole punch are all refused. */
	{
		errno = 0;
		assert_true(mmap(NULL, sizeof(struct sv2shm_ctl), PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0) == MAP_FAILED);
		assert_int_equal(errno, EPERM);
		uint32_t zero = 0;
		assert_int_equal(pwrite(cfd, &zero, sizeof(zero), 0), -1);
		assert_int_equal(errno, EPERM);
		assert_int_equal(fallocate(cfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), -1);
		assert_int_equal(errno, EPERM);
		assert_int_equal(mprotect((void *)(uintptr_t)ctl, sizeof(struct sv2shm_ctl), PROT_READ | PROT_WRITE), -1);
		assert_int_equal(ctl->magic, SV2SHM_CTL_MAGIC);
	}
	/* A slot that is not taken (never used): its generation matches. */
	unsigned sfree = 0;
	while (sfree == sx || sfree == sz)
		sfree++;
	d = good;
	d.slot = (uint16_t)sfree;
	d.generation = SV2SHM_STATE_GEN(atomic_load(&ctl->slots[sfree].state));
	d.offset = 0;
	d.length = 0;
	expect_open(r, ctl, &d, 1, -EACCES, "a free slot");
	/* Held, but not by this holder. */
	expect_open(r, ctl, &good, 2, -EACCES, "X opened by holder 2");
	expect_open(r, ctl, &good, 31, -EACCES, "X opened by holder 31");
	d = good;
	d.slot = (uint16_t)sz;
	d.generation = SV2SHM_STATE_GEN(atomic_load(&ctl->slots[sz].state));
	d.offset = ctl->slots[sz].offset;
	d.length = ctl->slots[sz].length;
	expect_open(r, ctl, &d, 1, -EACCES, "the producer's own slice Z opened by holder 1");
	/* Arguments. */
	expect_open(r, ctl, &good, 0, -EINVAL, "holder 0 (the producer's bit)");
	expect_open(r, ctl, &good, 32, -EINVAL, "holder 32");
	expect_open(r, ctl, &good, 1000, -EINVAL, "holder 1000");
	uint8_t raw[SV2SHM_DESC_SIZE];
	struct sv2shm_slice s;
	encode(&good, raw);
	assert_int_equal(sv2shm_region_open(NULL, raw, 1, &s), -EINVAL);
	assert_int_equal(sv2shm_region_open(r, NULL, 1, &s), -EINVAL);
	assert_int_equal(sv2shm_region_open(r, raw, 1, NULL), -EINVAL);
	assert_int_equal(sv2shm_desc_decode(raw, NULL), -EINVAL);
	assert_int_equal(sv2shm_desc_encode(NULL, raw), -EINVAL);

	/* The good descriptor opens: the bytes, in place, read-only. */
	assert_int_equal(sv2shm_region_open(r, raw, 1, &s), 0);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_SHARED);
	assert_int_equal(s.len, 1000);
	assert_int_equal(pat_check(s.data, pat_key(SEED, 10), s.len), s.len);
	assert_int_equal(sv2shm_region_detach(r), -EBUSY); /* a slice is open */
	struct sv2shm_slice copy = s;
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(ipc_mask(p), 1u << sz); /* X's only holder let go */
	assert_int_equal(sv2shm_slice_release(&copy), -EALREADY);
	assert_int_equal(ipc_mask(p), 1u << sz);
	/* Now X's descriptor names a free slot of the same generation. */
	expect_open(r, ctl, &good, 1, -ENOENT, "X after its release");
	/* Consumer 1 still has X's descriptor in its ring: recv validates it,
	 * reports -ENOENT, drops it, and goes on. */
	assert_int_equal(sv2shm_consumer_recv(c1, &s, 0), -ENOENT);
	assert_int_equal(sv2shm_consumer_recv(c1, &s, 0), 0);

	/* Y reuses X's slot with the next generation: X's descriptor is stale. */
	struct sv2shm_slice y;
	unsigned sy = bit_index(make_in(p, 12, 700, sx, &y));
	int both[2] = {1, 2};
	assert_int_equal(sv2shm_producer_publish(p, &y, both, 2, 0), 0);
	expect_open(r, ctl, &good, 1, -ESTALE, "X after its slot was reused");
	assert_int_equal(sv2shm_consumer_recv(c1, &s, 1000), 1);
	assert_int_equal(s.len, 700);
	assert_int_equal(pat_check(s.data, pat_key(SEED, 12), s.len), s.len);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(ipc_mask(p), (1u << sz) | (1u << sy)); /* consumer 2 holds Y */
	assert_int_equal(sv2shm_consumer_recv(c2, &s, 1000), 1);
	assert_int_equal(pat_check(s.data, pat_key(SEED, 12), s.len), s.len);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(ipc_mask(p), 1u << sz);
	assert_int_equal(sv2shm_slice_release(&z), 0);
	assert_int_equal(ipc_mask(p), 0);

	munmap((void *)(uintptr_t)ctl, sizeof(struct sv2shm_ctl));
	free_consumer(c1);
	free_consumer(c2);
	destroy_producer(p);
#undef BAD
}

/* --- 3b. attaching --------------------------------------------------------------- */

static void expect_attach(int cfd, int dfd, unsigned flags, int want, const char *what)
{
	int before = ipc_count_fds();
	struct sv2shm_region *r = NULL;
	int got = sv2shm_region_attach(cfd, dfd, flags, &r);
	if (got != want)
		fail_msg("%s: sv2shm_region_attach returned %d (%s), expected %d (%s)", what, got, sv2shm_strerror(got),
			 want, sv2shm_strerror(want));
	if (got == 0) {
		assert_non_null(r);
		assert_int_equal(sv2shm_region_detach(r), 0);
	}
	if (ipc_count_fds() != before)
		fail_msg("%s: %d fds open before, %d after", what, before, ipc_count_fds());
}

static void test_region_attach_rejects(void **state)
{
	(void)state;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 8, CAP, 0);
	struct sv2shm_consumer *c = inproc_consumer(p, 1);
	struct sv2shm_region *cr = sv2shm_consumer_region(c);
	const int cfd = sv2shm_region_fd(cr, 0), dfd = sv2shm_region_fd(cr, 1);
	struct sv2shm_ctl real;
	assert_int_equal(pread(cfd, &real, sizeof(real), 0), (ssize_t)sizeof(real));
	assert_int_equal(real.magic, SV2SHM_CTL_MAGIC);
	int fds_at_start = ipc_count_fds();

	expect_attach(cfd, dfd, 0, 0, "the real region");
	/* Arguments and fds. */
	assert_int_equal(sv2shm_region_attach(cfd, dfd, 0, NULL), -EINVAL);
	expect_attach(-1, dfd, 0, -EINVAL, "ctl fd -1");
	expect_attach(cfd, -1, 0, -EINVAL, "data fd -1");
	expect_attach(cfd, dfd, 2, -EINVAL, "unknown flag 2");
	expect_attach(cfd, dfd, 0x80000000u, -EINVAL, "unknown flag 1<<31");
	int closed = dup(cfd);
	assert_true(closed >= 0);
	close(closed);
	expect_attach(closed, dfd, 0, -EBADF, "ctl fd closed");
	expect_attach(cfd, closed, 0, -EBADF, "data fd closed");
	expect_attach(cfd, dfd, SV2SHM_ATTACH_WRITABLE, -EACCES, "WRITABLE on write-sealed data");

	/* A forged control block: right size and seals, garbage inside. */
	int fc = fake_memfd(sizeof(struct sv2shm_ctl), NULL, 0x1234, CTL_SEALS);
	expect_attach(fc, dfd, 0, -EPROTO, "garbage control block");
	close(fc);
	fc = fake_memfd(sizeof(struct sv2shm_ctl), NULL, 0, CTL_SEALS);
	expect_attach(fc, dfd, 0, -EPROTO, "all-zero control block");
	close(fc);
	struct sv2shm_ctl forged = real;
	forged.magic ^= 0x01000000u;
	fc = fake_memfd(sizeof(forged), &forged, 0, CTL_SEALS);
	expect_attach(fc, dfd, 0, -EPROTO, "bad magic");
	close(fc);
	forged = real;
	forged.version = SV2SHM_CTL_VERSION + 1u;
	fc = fake_memfd(sizeof(forged), &forged, 0, CTL_SEALS);
	expect_attach(fc, dfd, 0, -EPROTO, "bad version");
	close(fc);
	/* Sizes inside the block that disagree. */
	struct {
		const char *what;
		int field;
		uint64_t value;
	} sizes[] = {
		{"ctl_size + 64", 0, sizeof(struct sv2shm_ctl) + 64}, {"ctl_size 0", 0, 0},
		{"nslots 0", 1, 0},                                   {"nslots 65", 1, 65},
		{"nslots 2^32-1", 1, 0xffffffffu},                    {"capacity + 4096", 2, CAP + 4096},
		{"capacity 0", 2, 0},                                 {"capacity 2^32 + 1", 2, (UINT64_C(1) << 32) + 1},
		{"capacity 2^64-1", 2, UINT64_MAX},
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		forged = real;
		if (sizes[i].field == 0)
			forged.ctl_size = (uint32_t)sizes[i].value;
		else if (sizes[i].field == 1)
			forged.nslots = (uint32_t)sizes[i].value;
		else
			forged.capacity = sizes[i].value;
		fc = fake_memfd(sizeof(forged), &forged, 0, CTL_SEALS);
		expect_attach(fc, dfd, 0, -EMSGSIZE, sizes[i].what);
		close(fc);
	}
	/* memfds of the wrong size. */
	fc = fake_memfd(4096, NULL, 0, CTL_SEALS);
	expect_attach(fc, dfd, 0, -EMSGSIZE, "ctl memfd of 4096 bytes");
	close(fc);
	fc = fake_memfd(sizeof(struct sv2shm_ctl) - 1, NULL, 0, CTL_SEALS);
	expect_attach(fc, dfd, 0, -EMSGSIZE, "ctl memfd one byte short");
	close(fc);
	fc = fake_memfd(0, NULL, 0, CTL_SEALS);
	expect_attach(fc, dfd, 0, -EMSGSIZE, "empty ctl memfd");
	close(fc);
	int fd_ = fake_memfd(CAP + 4096, NULL, 0, ALL_SEALS | F_SEAL_FUTURE_WRITE);
	expect_attach(cfd, fd_, 0, -EMSGSIZE, "data memfd larger than the capacity");
	close(fd_);
	fd_ = fake_memfd(CAP - 4096, NULL, 0, ALL_SEALS | F_SEAL_FUTURE_WRITE);
	expect_attach(cfd, fd_, 0, -EMSGSIZE, "data memfd smaller than the capacity");
	close(fd_);
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	expect_attach(pfd[0], dfd, 0, -EMSGSIZE, "a pipe as ctl fd");
	close(pfd[0]);
	close(pfd[1]);

	/* Seals missing. */
	fc = fake_memfd(sizeof(real), &real, 0, 0);
	expect_attach(fc, dfd, 0, -EPERM, "ctl without seals");
	close(fc);
	fc = fake_memfd(sizeof(real), &real, 0, ALL_SEALS);
	expect_attach(fc, dfd, 0, -EPERM, "ctl without F_SEAL_FUTURE_WRITE");
	close(fc);
	fc = fake_memfd(sizeof(real), &real, 0, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE);
	expect_attach(fc, dfd, 0, -EPERM, "ctl without F_SEAL_SEAL");
	close(fc);
	fc = fake_memfd(sizeof(real), &real, 0, F_SEAL_GROW | F_SEAL_SEAL);
	expect_attach(fc, dfd, 0, -EPERM, "ctl without F_SEAL_SHRINK");
	close(fc);
	fc = fake_memfd(sizeof(real), &real, 0, F_SEAL_SHRINK | F_SEAL_SEAL);
	expect_attach(fc, dfd, 0, -EPERM, "ctl without F_SEAL_GROW");
	close(fc);
	fd_ = fake_memfd(CAP, NULL, 0, ALL_SEALS);
	expect_attach(cfd, fd_, 0, -EPERM, "data without F_SEAL_FUTURE_WRITE");
	/* ...which a writer may map writable (the producer's own case). */
	expect_attach(cfd, fd_, SV2SHM_ATTACH_WRITABLE, 0, "WRITABLE on data without F_SEAL_FUTURE_WRITE");
	close(fd_);
	fd_ = fake_memfd(CAP, NULL, 0, F_SEAL_GROW | F_SEAL_SEAL | F_SEAL_FUTURE_WRITE);
	expect_attach(cfd, fd_, 0, -EPERM, "data without F_SEAL_SHRINK");
	close(fd_);
	fd_ = fake_memfd(CAP, NULL, 0, 0);
	expect_attach(cfd, fd_, 0, -EPERM, "data without any seal");
	close(fd_);
	/* A regular file cannot carry seals at all. */
	int tf = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (tf >= 0) {
		assert_int_equal(pwrite(tf, &real, sizeof(real), 0), (ssize_t)sizeof(real));
		expect_attach(tf, dfd, 0, -EPERM, "a regular file as ctl fd");
		close(tf);
	}

	assert_int_equal(ipc_count_fds(), fds_at_start);
	free_consumer(c);
	destroy_producer(p);
}

/* --- 4. a consumer cannot resize or write ----------------------------------------- */

struct modify_arg {
	int sock;
	int ctl;
};

static void expect_errno(int ret, int err, const char *what)
{
	if (ret != -1 || errno != err)
		CHILD_FAIL("%s: returned %d (%s), expected -1 with %s", what, ret, ret < 0 ? strerror(errno) : "ok",
			   strerror(err));
}

static int modify_consumer(void *argp)
{
	const struct modify_arg *a = argp;
	struct sv2shm_consumer *c = NULL;
	CHECK_EQ(sv2shm_consumer_new(a->sock, NULL, &c), 0);
	struct sv2shm_slice s;
	CHECK_EQ(sv2shm_consumer_recv(c, &s, 5000), 1);
	CHECK_EQ(s.len, 8192);
	CHECK_EQ(pat_check(s.data, pat_key(SEED, 40), s.len), s.len);
	struct sv2shm_region *r = sv2shm_consumer_region(c);
	const int cfd = sv2shm_region_fd(r, 0), dfd = sv2shm_region_fd(r, 1);
	CHECK(cfd >= 0 && dfd >= 0);
	struct stat st;
	CHECK_EQ(fstat(dfd, &st), 0);
	CHECK_EQ(st.st_size, CAP);
	const size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	/* Shrink or grow: SIGBUS for everyone else. */
	expect_errno(ftruncate(dfd, 0), EPERM, "ftruncate(data, 0)");
	expect_errno(ftruncate(dfd, CAP / 2), EPERM, "ftruncate(data, cap/2)");
	expect_errno(ftruncate(dfd, 2 * CAP), EPERM, "ftruncate(data, 2*cap)");
	expect_errno(ftruncate(cfd, 0), EPERM, "ftruncate(ctl, 0)");
	expect_errno(ftruncate(cfd, 1 << 20), EPERM, "ftruncate(ctl, 1 MiB)");
	expect_errno(fallocate(dfd, 0, 0, 2 * CAP), EPERM, "fallocate(data) growing it");
	/* Punching a hole would zero a live slice. */
	expect_errno(fallocate(dfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)pg), EPERM,
		     "fallocate(data, PUNCH_HOLE)");
	/* Writing. */
	char junk[16] = "not-the-pattern";
	expect_errno((int)write(dfd, junk, sizeof(junk)), EPERM, "write(data)");
	expect_errno((int)pwrite(dfd, junk, sizeof(junk), 0), EPERM, "pwrite(data, 0)");
	void *m = mmap(NULL, CAP, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
	if (m != MAP_FAILED)
		CHILD_FAIL("mmap(data, PROT_WRITE, MAP_SHARED) succeeded");
	CHECK_EQ(errno, EPERM);
	m = mmap(NULL, pg, PROT_WRITE, MAP_SHARED, dfd, (off_t)pg);
	if (m != MAP_FAILED)
		CHILD_FAIL("mmap(data page 1, PROT_WRITE, MAP_SHARED) succeeded");
	CHECK_EQ(errno, EPERM);
	/* A read-only shared mapping cannot be made writable later. */
	m = mmap(NULL, CAP, PROT_READ, MAP_SHARED, dfd, 0);
	CHECK(m != MAP_FAILED);
	expect_errno(mprotect(m, CAP, PROT_READ | PROT_WRITE), EACCES, "mprotect(own MAP_SHARED mapping, PROT_WRITE)");
	munmap(m, CAP);
	/* Nor the one the library made (the slice is at offset 0). */
	uintptr_t base = (uintptr_t)s.data & ~(uintptr_t)(pg - 1);
	expect_errno(mprotect((void *)base, pg, PROT_READ | PROT_WRITE), EACCES,
		     "mprotect(the library's data mapping, PROT_WRITE)");
	/* Reopening the memfd through /proc gives a new file description of
	 * the same inode: the seals still hold. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", dfd);
	int fd2 = open(path, O_RDWR | O_CLOEXEC);
	if (fd2 >= 0) {
		expect_errno(ftruncate(fd2, 0), EPERM, "ftruncate(reopened data)");
		expect_errno((int)write(fd2, junk, sizeof(junk)), EPERM, "write(reopened data)");
		m = mmap(NULL, CAP, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
		if (m != MAP_FAILED)
			CHILD_FAIL("mmap(reopened data, PROT_WRITE, MAP_SHARED) succeeded");
		expect_errno(fcntl(fd2, F_ADD_SEALS, F_SEAL_WRITE), EPERM, "F_ADD_SEALS on reopened data");
		close(fd2);
	}
	/* No more seals (F_SEAL_WRITE on the control block would freeze every
	 * process's releases). */
	expect_errno(fcntl(dfd, F_ADD_SEALS, F_SEAL_WRITE), EPERM, "F_ADD_SEALS(data, F_SEAL_WRITE)");
	expect_errno(fcntl(cfd, F_ADD_SEALS, F_SEAL_WRITE), EPERM, "F_ADD_SEALS(ctl, F_SEAL_WRITE)");
	/* A private copy-on-write mapping is ours alone. */
	uint8_t *pm = mmap(NULL, CAP, PROT_READ | PROT_WRITE, MAP_PRIVATE, dfd, 0);
	CHECK(pm != MAP_FAILED);
	memset(pm, 0xee, CAP);
	munmap(pm, CAP);

	CHECK_EQ(fstat(dfd, &st), 0);
	CHECK_EQ(st.st_size, CAP);
	CHECK_EQ(fstat(cfd, &st), 0);
	CHECK_EQ(st.st_size, sizeof(struct sv2shm_ctl));
	CHECK_EQ(pat_check(s.data, pat_key(SEED, 40), s.len), s.len);
	CHECK_EQ(ipc_send_u64(a->ctl, 1), 0);
	(void)child_wait_cmd(a->ctl, 10000); /* the producer checked its bytes */
	CHECK_EQ(sv2shm_slice_release(&s), 0);
	CHECK_EQ(sv2shm_consumer_free(c), 0);
	return 0;
}

static void test_consumer_cannot_modify(void **state)
{
	(void)state;
	int sv[2], cv[2];
	assert_int_equal(ipc_seqpacket_pair(sv), 0);
	assert_int_equal(ipc_seqpacket_pair(cv), 0);
	struct modify_arg arg = {.sock = sv[1], .ctl = cv[1]};
	int keep[2] = {sv[1], cv[1]};
	/* Forked before the producer exists: it inherits no mapping of it. */
	pid_t pid = ipc_spawn(modify_consumer, &arg, keep, 2, 60);
	assert_true(pid > 0);
	close(sv[1]);
	close(cv[1]);
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 0);
	int id = sv2shm_producer_add_consumer(p, sv[0]);
	assert_int_equal(id, 1);
	struct sv2shm_slice s;
	make(p, 40, 8192, &s);
	const uint8_t *bytes = s.data; /* the producer's own view */
	assert_int_equal(sv2shm_producer_publish(p, &s, &id, 1, 0), 0);
	uint64_t v = 0;
	parent_wait_u64(cv[0], &v, 20000);
	assert_int_equal(v, 1);
	assert_int_equal(pat_check(bytes, pat_key(SEED, 40), 8192), 8192);
	assert_int_equal(ipc_send_u64(cv[0], 2), 0);
	assert_child_ok(pid, 20000);
	close(cv[0]);
	assert_int_equal(ipc_mask(p), 0);
	destroy_producer(p);
}

/* --- recv against a ring written by a producer gone bad -------------------------- */

static void expect_recv(struct sv2shm_consumer *c, int want, const char *what)
{
	struct sv2shm_slice s;
	memset(&s, 0, sizeof(s));
	int got = sv2shm_consumer_recv(c, &s, 2000);
	if (got != want)
		fail_msg("%s: sv2shm_consumer_recv returned %d (%s), expected %d (%s)", what, got,
			 got < 0 ? sv2shm_strerror(got) : "", want, want < 0 ? sv2shm_strerror(want) : "");
	if (got == 1)
		fail_msg("%s: unexpected slice", what);
}

/* An alloc-mode message (sent before its marker, as the producer does). */
static void send_overflow(struct mitm *m, uint32_t magic, uint64_t length, int fd)
{
	struct sv2shm_msg_desc msg;
	memset(&msg, 0, sizeof(msg));
	msg.hdr.magic = magic;
	msg.hdr.version = SV2SHM_MSG_VERSION;
	msg.hdr.type = SV2SHM_MSG_OVERFLOW;
	struct sv2shm_desc d = {.version = SV2SHM_DESC_VERSION, .kind = SV2SHM_DESC_OVERFLOW, .length = length};
	encode(&d, msg.desc);
	assert_int_equal(ipc_send_fds(m->fake_sock, &msg, sizeof(msg), &fd, fd >= 0 ? 1 : 0), 0);
}

static void test_recv_rejects_ring_garbage(void **state)
{
	(void)state;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 16);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	int fds_at_start = ipc_count_fds();

	/* The real producer's descriptors arrive through the same ring. */
	struct sv2shm_slice x, s;
	unsigned sx = bit_index(make(p, 50, 3000, &x));
	int id = 1;
	assert_int_equal(sv2shm_producer_publish(p, &x, &id, 1, 0), 0);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1);
	assert_int_equal(pat_check(s.data, pat_key(SEED, 50), s.len), 3000);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(ipc_mask(p), 0);
	/* From here on we are the producer of this ring. */

	/* V: a live slot published to consumer 1 for real; we take its entry
	 * back out of the ring (we are the producer of this ring now) and keep
	 * the good descriptor for the end. */
	struct sv2shm_slice v;
	unsigned sv_ = bit_index(make_in(p, 51, 2000, sx, &v));
	uint32_t h = atomic_load(&m.ring->head);
	assert_int_equal(sv2shm_producer_publish(p, &v, &id, 1, SV2SHM_PUBLISH_MORE), 0);
	assert_int_equal(atomic_load(&m.ring->head), h + 1u);
	struct sv2shm_desc good;
	assert_int_equal(sv2shm_desc_decode(ring_slot(m.ring, 16u, h), &good), 0);
	atomic_store((_Atomic uint32_t *)(void *)(ring_slot(m.ring, 16u, h) + RING_ENTRY_SEQ), 0u);
	atomic_store(&m.ring->head, h);
	assert_int_equal(sv2shm_producer_held(p, id), 1);
	struct sv2shm_desc d;
	/* Descriptors that do not name the hold (or cannot be read) are
	 * refused and change nothing: consumer 1 still holds V. */
#define BAD(field, value, want)                                                                                     \
	do {                                                                                                        \
		d = good;                                                                                           \
		d.field = (value);                                                                                  \
		inject(&m, &d);                                                                                     \
		expect_recv(c, (want), "ring: " #field " = " #value);                                               \
		assert_int_equal(sv2shm_producer_held(p, id), 1);                                                   \
	} while (0)
	BAD(version, 7, -EBADMSG);
	BAD(kind, 9, -EBADMSG);
	BAD(region_id, good.region_id + 1u, -ENXIO);
	BAD(slot, 200, -ERANGE);
	d = good;
	d.slot = (uint16_t)(sv_ + 1u);
	d.generation = 0;
	d.offset = 0;
	d.length = 0;
	inject(&m, &d);
	expect_recv(c, -ESTALE, "ring: generation 0 (a slot never handed out)");
	/*
	 * In-bounds descriptors that do not name V's hold are the producer's
	 * word: the ring is filled only by the producer, which also writes the
	 * control block, so recv does not cross-check the slot record (one
	 * cache line less per slice; sv2shm_region_open() still does). What it
	 * cannot do is make a release count for a hold it did not name: the
	 * producer compares each release with what it published.
	 */
	d = good;
	d.generation = good.generation + 5u;
	inject(&m, &d);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_producer_held(p, id), 1); /* still holds V */
	/* The producer's own slice Z (not published to anyone). */
	struct sv2shm_slice z;
	unsigned sz = bit_index(make(p, 52, 100, &z));
	assert_int_equal(sv2shm_producer_process(p), 0); /* the claim's view, as a tool would see it */
	d.slot = (uint16_t)sz;
	d.generation = SV2SHM_STATE_GEN(atomic_load(&m.ctl->slots[sz].state));
	d.offset = m.ctl->slots[sz].offset;
	d.length = 100;
	inject(&m, &d);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_true(ipc_mask(p) & (UINT64_C(1) << sz)); /* Z stays the producer's */
	assert_int_equal(sv2shm_producer_held(p, id), 1);
	/* After all of that, the good descriptor still works. */
	inject(&m, &good);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_SHARED);
	assert_int_equal(s.len, 2000);
	assert_int_equal(pat_check(s.data, pat_key(SEED, 51), s.len), s.len);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_producer_held(p, id), 0);
	assert_int_equal(sv2shm_slice_release(&z), 0);
	assert_int_equal(ipc_mask(p), 0);
	/* Alloc-mode markers whose message is broken. */
	struct sv2shm_desc mk = {.version = SV2SHM_DESC_VERSION, .kind = SV2SHM_DESC_OVERFLOW, .length = 4096};
	int good_fd = fake_memfd(4096, NULL, 0, 0);
	{
		uint8_t buf[4096];
		pat_fill(buf, pat_key(SEED, 53), 0, sizeof(buf));
		assert_int_equal(pwrite(good_fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	}
	assert_int_equal(fcntl(good_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL), 0);
	int unsealed = fake_memfd(4096, NULL, 0, 0);
	int wrong_size = fake_memfd(1000, NULL, 0, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL);

	send_overflow(&m, SV2SHM_MSG_MAGIC ^ 1u, 4096, good_fd);
	inject(&m, &mk);
	expect_recv(c, -EBADMSG, "overflow message with a bad magic");
	send_overflow(&m, SV2SHM_MSG_MAGIC, 4096, -1);
	inject(&m, &mk);
	expect_recv(c, -EBADMSG, "overflow message without its fd");
	send_overflow(&m, SV2SHM_MSG_MAGIC, 4000, good_fd);
	inject(&m, &mk);
	expect_recv(c, -EBADMSG, "overflow message and marker disagree on the length");
	send_overflow(&m, SV2SHM_MSG_MAGIC, 4096, wrong_size);
	inject(&m, &mk);
	expect_recv(c, -EBADMSG, "overflow memfd smaller than the slice");
	send_overflow(&m, SV2SHM_MSG_MAGIC, 4096, unsealed);
	inject(&m, &mk);
	expect_recv(c, -EBADMSG, "overflow memfd without seals");
	{
		uint8_t garbage[40];
		memset(garbage, 0x5a, sizeof(garbage));
		assert_int_equal(ipc_send_fds(m.fake_sock, garbage, sizeof(garbage), &good_fd, 1), 0);
		inject(&m, &mk);
		expect_recv(c, -EBADMSG, "overflow message of garbage");
		assert_int_equal(ipc_send_fds(m.fake_sock, garbage, 12, &good_fd, 1), 0);
		inject(&m, &mk);
		expect_recv(c, -EBADMSG, "overflow message too short");
	}
	/* A marker with no message at all: the producer sends the message before
	 * the marker, so the consumer does not wait for it. */
	inject(&m, &mk);
	uint64_t t0 = ipc_now_ns();
	expect_recv(c, -EBADMSG, "overflow marker without a message");
	assert_true(ipc_now_ns() - t0 < UINT64_C(50000000));
	/* And a good one still arrives, as MAPPED. */
	send_overflow(&m, SV2SHM_MSG_MAGIC, 4096, good_fd);
	inject(&m, &mk);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1);
	assert_int_equal(sv2shm_slice_kind(&s), SV2SHM_SLICE_MAPPED);
	assert_int_equal(s.len, 4096);
	assert_int_equal(pat_check(s.data, pat_key(SEED, 53), s.len), s.len);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	close(good_fd);
	close(unsealed);
	close(wrong_size);

	assert_int_equal(ipc_count_fds(), fds_at_start); /* every received fd was closed */

	/* Broken ring indices: the producer broke the protocol. The channel is
	 * dead: reported once (-EPROTO), then -EPIPE for good, even when the
	 * indices look right again; and the consumer hung up. */
	uint32_t tail = atomic_load(&m.ring->tail);
	assert_int_equal(atomic_load(&m.ring->head), tail);
	atomic_store(&m.ring->head, tail + m.msg.ring_entries + 1u);
	expect_recv(c, -EPROTO, "head more than a ring ahead of tail");
	for (int i = 0; i < 3; i++)
		expect_recv(c, -EPIPE, "after a broken ring");
	atomic_store(&m.ring->head, tail);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 0), -EPIPE);
	assert_int_equal(sv2shm_consumer_recv(c, &s, 100), -EPIPE);
	{
		char b;
		assert_int_equal(recv(m.fake_sock, &b, 1, MSG_DONTWAIT), 0); /* EOF: it hung up */
	}
	assert_int_equal(ipc_mask(p), 0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
#undef BAD
}

/* A refused ring entry that names its hold (right slot and generation, wrong
 * bytes) gives the hold back: a slot never leaks through a bad descriptor. */
static void test_recv_refused_gives_hold_back(void **state)
{
	(void)state;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 16);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	int id = 1;
	struct sv2shm_slice v;
	struct sv2shm_desc d;
	uint32_t h;
	static const struct {
		int field; /* 0 offset, 1 length */
		uint64_t value;
	} named[] = {{0, UINT64_MAX - 10u}, {1, UINT64_MAX}, {0, CAP}, {0, CAP - 999}};
	for (unsigned k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
		make(p, 54 + k, 1000, &v);
		h = atomic_load(&m.ring->head);
		assert_int_equal(sv2shm_producer_publish(p, &v, &id, 1, SV2SHM_PUBLISH_MORE), 0);
		assert_int_equal(sv2shm_desc_decode(ring_slot(m.ring, 16u, h), &d), 0);
		if (named[k].field == 0)
			d.offset = named[k].value;
		else
			d.length = named[k].value;
		encode(&d, ring_slot(m.ring, 16u, h));
		assert_int_equal(sv2shm_producer_held(p, id), 1);
		expect_recv(c, -EFAULT, "ring: the hold's slot and generation, other bytes");
		assert_int_equal(sv2shm_producer_held(p, id), 0);
		assert_int_equal(ipc_mask(p), 0);
	}
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

/* --- ring full ---------------------------------------------------------------------- */

static void test_ring_full(void **state)
{
	(void)state;
	struct sv2shm_producer_options o;
	memset(&o, 0, sizeof(o));
	o.pool.capacity = CAP;
	struct sv2shm_producer *bad = NULL;
	o.ring_entries = 3;
	assert_int_equal(sv2shm_producer_new(&o, &bad), -EINVAL);
	o.ring_entries = 1;
	assert_int_equal(sv2shm_producer_new(&o, &bad), -EINVAL);
	o.ring_entries = 1u << 17;
	assert_int_equal(sv2shm_producer_new(&o, &bad), -EINVAL);
	o.ring_entries = 2;
	o.notify = 7;
	assert_int_equal(sv2shm_producer_new(&o, &bad), -EINVAL);

	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 8, CAP, 2);
	struct sv2shm_consumer *c1 = inproc_consumer(p, 1);
	struct sv2shm_consumer *c2 = inproc_consumer(p, 2);
	struct sv2shm_slice a, b, x, s;
	int id1 = 1, id2 = 2, both[2] = {1, 2};
	make(p, 60, 100, &a);
	make(p, 61, 100, &b);
	assert_int_equal(sv2shm_producer_publish(p, &a, &id2, 1, 0), 0);
	assert_int_equal(sv2shm_producer_publish(p, &b, &id2, 1, 0), 0);
	/* Consumer 2's ring (2 entries) is full. */
	uint64_t bx = make(p, 62, 100, &x);
	uint64_t mask = ipc_mask(p);
	struct sv2shm_slice saved = x;
	assert_int_equal(sv2shm_producer_publish(p, &x, both, 2, 0), -EAGAIN);
	/* Nothing was published to anyone: the slice is still ours... */
	assert_memory_equal(&x, &saved, sizeof(x));
	assert_int_equal(ipc_mask(p), mask);
	/* ...consumer 1 got nothing... */
	assert_int_equal(sv2shm_consumer_recv(c1, &s, 0), 0);
	/* ...and once consumer 2 catches up, the same slice goes out. */
	assert_int_equal(sv2shm_consumer_recv(c2, &s, 1000), 1);
	assert_int_equal(pat_check(s.data, pat_key(SEED, 60), s.len), 100);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_producer_publish(p, &x, both, 2, 0), 0);
	assert_int_equal(sv2shm_consumer_recv(c1, &s, 1000), 1);
	assert_int_equal(pat_check(s.data, pat_key(SEED, 62), s.len), 100);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(ipc_mask(p) & bx, bx); /* consumer 2 still holds X */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(sv2shm_consumer_recv(c2, &s, 1000), 1);
		assert_int_equal(pat_check(s.data, pat_key(SEED, 61 + (uint64_t)i), s.len), 100);
		assert_int_equal(sv2shm_slice_release(&s), 0);
	}
	assert_int_equal(sv2shm_consumer_recv(c2, &s, 0), 0);
	assert_int_equal(ipc_mask(p), 0);
	/* Publishing arguments. */
	make(p, 63, 10, &x);
	assert_int_equal(sv2shm_producer_publish(p, &x, &id1, 0, 0), -EINVAL);
	int dup2ids[2] = {1, 1};
	assert_int_equal(sv2shm_producer_publish(p, &x, dup2ids, 2, 0), -EINVAL);
	int unknown = 5;
	assert_int_equal(sv2shm_producer_publish(p, &x, &unknown, 1, 0), -EINVAL);
	assert_int_equal(sv2shm_producer_publish(p, &x, &id1, 1, 0x80), -EINVAL);
	assert_int_equal(sv2shm_slice_release(&x), 0);
	assert_int_equal(ipc_mask(p), 0);
	free_consumer(c1);
	free_consumer(c2);
	destroy_producer(p);
}


/* A shared pool's view in the control block (state words, mask) — what the
 * broker's reclaim and the tools read — lags a claim or a tidy until the
 * next publish's entry is out, a wait, or sv2shm_producer_process(); the
 * state word of a published slot is written before its entry, a claim's
 * record and the counters as they change. */
static void test_view_follows_the_pool(void **state)
{
	(void)state;
	struct sv2shm_producer *p = new_producer(SV2SHM_POOL_FAIL, 4, CAP, 16);
	struct mitm m;
	struct sv2shm_consumer *c = mitm_consumer(p, &m, 1);
	const struct sv2shm_ctl *ctl = m.ctl;
	int id = 1;
	struct sv2shm_slice a, z, s;
	unsigned sa = bit_index(make(p, 80, 500, &a));
	uint32_t ga = a._gen;
	uint32_t h = atomic_load(&m.ring->head);
	assert_int_equal(sv2shm_producer_publish(p, &a, &id, 1, 0), 0);
	assert_int_equal(atomic_load(&m.ring->head), h + 1u);
	struct sv2shm_desc d;
	assert_int_equal(sv2shm_desc_decode(ring_slot(m.ring, 16u, h), &d), 0);
	uint64_t st = atomic_load(&ctl->slots[sa].state);
	assert_int_equal(SV2SHM_STATE_GEN(st), ga);
	assert_int_equal(SV2SHM_STATE_HOLDERS(st), UINT32_C(1) << 1); /* consumer id 1 only: we let go */
	assert_int_equal(ctl->slots[sa].offset, d.offset);
	assert_int_equal(ctl->slots[sa].length, 500);
	assert_int_equal(atomic_load(&ctl->mask), UINT64_C(1) << sa);
	assert_int_equal(atomic_load(&ctl->counters.live), 1);
	assert_int_equal(atomic_load(&ctl->counters.bytes_in_use), 500);

	/* The producer's own slice, never published: process() shows it. */
	unsigned sz = bit_index(make(p, 81, 100, &z));
	assert_int_equal(sv2shm_producer_process(p), 0);
	st = atomic_load(&ctl->slots[sz].state);
	assert_int_equal(SV2SHM_STATE_GEN(st), z._gen);
	assert_int_equal(SV2SHM_STATE_HOLDERS(st), 1u); /* bit 0: the producer */
	assert_int_equal(ctl->slots[sz].length, 100);
	assert_int_equal(atomic_load(&ctl->mask), (UINT64_C(1) << sa) | (UINT64_C(1) << sz));
	assert_int_equal(atomic_load(&ctl->counters.live), 2);
	assert_int_equal(atomic_load(&ctl->counters.hw_slots), 2);

	/* Both let go; the next claim's tidy drops them: their state words at
	 * once, before the bytes can be handed out again, the rest at the sync. */
	assert_int_equal(sv2shm_consumer_recv(c, &s, 1000), 1);
	assert_int_equal(sv2shm_slice_release(&s), 0);
	assert_int_equal(sv2shm_slice_release(&z), 0);
	assert_int_equal(ipc_mask(p), 0);
	struct sv2shm_slice w;
	unsigned sw = bit_index(make(p, 82, CAP, &w)); /* as large as the pool: tidies first */
	for (unsigned k = 0; k < ctl->nslots; k++)
		if (k != sw)
			assert_int_equal(SV2SHM_STATE_HOLDERS(atomic_load(&ctl->slots[k].state)), 0);
	assert_int_equal(sv2shm_producer_process(p), 0);
	assert_int_equal(atomic_load(&ctl->mask), UINT64_C(1) << sw);
	for (unsigned k = 0; k < ctl->nslots; k++)
		if (k != sw)
			assert_int_equal(SV2SHM_STATE_HOLDERS(atomic_load(&ctl->slots[k].state)), 0);
	assert_int_equal(atomic_load(&ctl->counters.live), 1);
	assert_int_equal(atomic_load(&ctl->counters.bytes_in_use), CAP);
	assert_int_equal(atomic_load(&ctl->counters.releases), 2);
	assert_int_equal(sv2shm_slice_release(&w), 0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);

	/* A wait writes the view before it spins or sleeps: a full pool is what
	 * a tool looks at. Every slot claimed, nothing published or processed;
	 * the next get_writable() waits 20 ms and times out. */
	p = new_producer_waiting(SV2SHM_POOL_WAIT, 4, CAP, 16, 20);
	c = mitm_consumer(p, &m, 1);
	ctl = m.ctl;
	struct sv2shm_slice all[4];
	uint64_t claimed = 0;
	for (int k = 0; k < 4; k++)
		claimed |= make(p, 83 + (uint64_t)k, 100, &all[k]);
	assert_int_equal(claimed, 0xfu);
	assert_int_equal(sv2shm_producer_process(p), 0);
	assert_int_equal(sv2shm_slice_release(&all[3]), 0); /* the last, an end of the run: freed by the next tidy */
	struct sv2shm_slice more;
	claimed = make(p, 87, 100, &more); /* the tidy drops slot 3, the claim takes it: view due */
	assert_int_equal(claimed, UINT64_C(1) << 3);
	assert_int_equal(SV2SHM_STATE_HOLDERS(atomic_load(&ctl->slots[3].state)), 0); /* (gen, 0) of the drop */
	struct sv2shm_buffer *b = sv2shm_producer_buffer(p);
	assert_null(sv2shm_buffer_get_writable(b, 100));
	assert_int_equal(sv2shm_buffer_last_error(b), -ETIMEDOUT);
	st = atomic_load(&ctl->slots[3].state);
	assert_int_equal(SV2SHM_STATE_GEN(st), more._gen);
	assert_int_equal(SV2SHM_STATE_HOLDERS(st), 1u);
	for (int k = 0; k < 3; k++)
		assert_int_equal(sv2shm_slice_release(&all[k]), 0);
	assert_int_equal(sv2shm_slice_release(&more), 0);
	free_consumer(c);
	mitm_close(&m);
	destroy_producer(p);
}

/* The single-consumer publish writes its ring entry with ring_put_pool_desc()
 * (four 8-byte stores), everything else with sv2shm_desc_encode(): both must
 * write the same 32 bytes, and nothing past them (the entry's sequence word
 * follows at RING_ENTRY_SEQ). */
static void test_ring_put_matches_encode(void **state)
{
	(void)state;
	static const struct {
		uint16_t slot;
		uint32_t gen;
		uint64_t region_id, offset, length;
	} cases[] = {
		{0, 1, 1, 0, 0},
		{63, 0xffffffffu, UINT64_C(0x0123456789abcdef), UINT64_C(4096), UINT64_C(64)},
		{0xffff, 0x80000001u, UINT64_MAX, UINT64_C(1) << 32, (UINT64_C(1) << 32) - 1},
		{7, 0x00ff00ffu, UINT64_C(0xfedcba9876543210), UINT64_MAX - 1, UINT64_MAX},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sv2shm_desc d = {.version = SV2SHM_DESC_VERSION,
					.kind = SV2SHM_DESC_POOL,
					.slot = cases[i].slot,
					.generation = cases[i].gen,
					.region_id = cases[i].region_id,
					.offset = cases[i].offset,
					.length = cases[i].length};
		uint8_t want[SV2SHM_RING_ENTRY_SIZE], got[SV2SHM_RING_ENTRY_SIZE];
		memset(want, 0xa5, sizeof(want));
		memset(got, 0xa5, sizeof(got));
		assert_int_equal(sv2shm_desc_encode(&d, want), 0);
		ring_put_pool_desc(got, d.slot, d.generation, d.region_id, d.offset, d.length);
		assert_memory_equal(got, want, sizeof(got));
		for (size_t k = SV2SHM_DESC_SIZE; k < sizeof(got); k++)
			assert_int_equal(got[k], 0xa5);
		struct sv2shm_desc back;
		assert_int_equal(sv2shm_desc_decode(got, &back), 0);
		assert_int_equal(back.slot, d.slot);
		assert_int_equal(back.generation, d.generation);
		assert_true(back.region_id == d.region_id && back.offset == d.offset && back.length == d.length);
	}
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("SV2SHM_IPC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SV2SHM_IPC_TEST_FILTER"));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_release_cross_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_region_open_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_region_attach_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_consumer_cannot_modify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recv_rejects_ring_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recv_refused_gives_hold_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_full, setup, teardown),
		cmocka_unit_test(test_ring_put_matches_encode),
		cmocka_unit_test(test_view_follows_the_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
