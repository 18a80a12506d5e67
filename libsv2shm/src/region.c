/*
 * Shared regions. The producer creates two memfds — a small control block
 * every process maps read-write, and the data area — seals them against
 * shrink, grow and further sealing (and the data against writes by anyone
 * who maps it later) before any other process sees them. A consumer attaches
 * from the two fds, checks all of that, and validates every descriptor
 * against its private copy of the region's geometry before touching a byte.
 */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"
#include "pool.h"
#include "region.h"
#include "slots.h"
#include "stamps.h"
#include "wire.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

static int memfd(const char *name)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
	if (fd < 0 && errno == EINVAL) /* kernels before 6.3 lack MFD_NOEXEC_SEAL */
		fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	return fd < 0 ? -errno : fd;
}

int region_memfd(const char *name, size_t size, unsigned seals, void **map)
{
	int fd = memfd(name);
	if (fd < 0)
		return fd;
	int r;
	void *m = NULL;
	if (ftruncate(fd, (off_t)size) < 0)
		goto fail_errno;
	if (size) {
		/* Allocate now: a memory limit is an error here, not SIGBUS later. */
		r = posix_fallocate(fd, 0, (off_t)size);
		if (r) {
			r = -r;
			goto fail;
		}
		m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			m = NULL;
			goto fail_errno;
		}
	}
	if (fcntl(fd, F_ADD_SEALS, seals) < 0)
		goto fail_errno;
	*map = m;
	return fd;
fail_errno:
	r = -errno;
fail:
	if (m)
		munmap(m, size);
	close(fd);
	return r;
}

static uint64_t random_id(void)
{
	uint64_t id = 0;
	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id)) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		id = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
	}
	return id ? id : 1;
}

int region_create(uint64_t cap, unsigned nslots, struct region_mem *out)
{
	memset(out, 0, sizeof(*out));
	out->ctl_fd = out->data_fd = -1;
	void *ctl = NULL, *data = NULL;
	/* The control block is initialised before the seals go on; nobody else
	 * has the fd yet. */
	int fd = memfd("sv2shm-ctl");
	if (fd < 0)
		return fd;
	int r;
	if (ftruncate(fd, sizeof(struct sv2shm_ctl)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	ctl = mmap(NULL, sizeof(struct sv2shm_ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ctl == MAP_FAILED) {
		r = -errno;
		close(fd);
		return r;
	}
	pool_ctl_init(ctl, cap, nslots, random_id());
	/* F_SEAL_FUTURE_WRITE after our mapping: consumers can only map it
	 * read-only, and cannot write(), fallocate() or punch it either. */
	if (fcntl(fd, F_ADD_SEALS, REGION_CTL_SEALS) < 0) {
		r = -errno;
		munmap(ctl, sizeof(struct sv2shm_ctl));
		close(fd);
		return r;
	}
	out->ctl_fd = fd;
	out->ctl = ctl;

	/* The data: mapped read-write here first, then F_SEAL_FUTURE_WRITE so
	 * every later mapping (the consumers') can only be read-only. */
	fd = region_memfd("sv2shm-data", (size_t)cap, REGION_DATA_SEALS, &data);
	if (fd < 0) {
		region_mem_free(out);
		return fd == -ENOSPC ? -ENOMEM : fd;
	}
	out->data_fd = fd;
	out->data = data;
	out->cap = cap;
	return 0;
}

void region_mem_free(struct region_mem *m)
{
	if (m->data)
		munmap(m->data, (size_t)m->cap);
	if (m->ctl)
		munmap(m->ctl, sizeof(struct sv2shm_ctl));
	if (m->data_fd >= 0)
		close(m->data_fd);
	if (m->ctl_fd >= 0)
		close(m->ctl_fd);
	memset(m, 0, sizeof(*m));
	m->ctl_fd = m->data_fd = -1;
}

int region_overflow_memfd(const uint8_t *bytes, size_t len)
{
	void *m = NULL;
	/* Seal FUTURE_WRITE only after copying: the seal forbids new writable
	 * mappings, and our own mapping is already there. */
	int fd = region_memfd("sv2shm-overflow", len, F_SEAL_SHRINK | F_SEAL_GROW, &m);
	if (fd < 0)
		return fd;
	memcpy(m, bytes, len);
	munmap(m, len);
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* --- consumer side -------------------------------------------------------- */

static int check_seals(int fd, unsigned need)
{
	int s = fcntl(fd, F_GET_SEALS);
	if (s < 0)
		return errno == EBADF ? -EBADF : -EPERM;
	return ((unsigned)s & need) == need ? 0 : -EPERM;
}

SV2SHM_API int sv2shm_region_attach(int ctl_fd, int data_fd, unsigned flags, struct sv2shm_region **out)
{
	if (!out || ctl_fd < 0 || data_fd < 0 || (flags & ~SV2SHM_ATTACH_WRITABLE))
		return -EINVAL;
	struct stat cst, dst;
	if (fstat(ctl_fd, &cst) < 0 || fstat(data_fd, &dst) < 0)
		return -EBADF;
	if (cst.st_size != (off_t)sizeof(struct sv2shm_ctl))
		return -EMSGSIZE;
	int r = check_seals(ctl_fd, REGION_CTL_SEALS);
	if (r < 0)
		return r;
	r = check_seals(data_fd, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	if (r < 0)
		return r;
	bool write_sealed = check_seals(data_fd, F_SEAL_FUTURE_WRITE) == 0;
	if (flags & SV2SHM_ATTACH_WRITABLE) {
		if (write_sealed)
			return -EACCES;
	} else if (!write_sealed) {
		return -EPERM;
	}

	struct sv2shm_region *rg = calloc(1, sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	rg->ctl_fd = rg->data_fd = -1;
	const struct sv2shm_ctl *ctl = mmap(NULL, sizeof(*ctl), PROT_READ, MAP_SHARED, ctl_fd, 0);
	if (ctl == MAP_FAILED) {
		free(rg);
		return -ENOMEM;
	}
	rg->ctl = ctl;
	/* Read the geometry once, check it, and keep private copies: nothing
	 * below reads these fields from shared memory again. */
	uint32_t magic = ctl->magic, version = ctl->version, ctl_size = ctl->ctl_size, nslots = ctl->nslots;
	uint64_t cap = ctl->capacity, id = ctl->region_id;
	if (magic != SV2SHM_CTL_MAGIC || version != SV2SHM_CTL_VERSION) {
		r = -EPROTO;
		goto fail;
	}
	if (ctl_size != sizeof(*ctl) || nslots < 1 || nslots > SV2SHM_MAX_SLOTS || cap > SV2SHM_POOL_MAX_CAPACITY ||
	    (uint64_t)dst.st_size != cap) {
		r = -EMSGSIZE;
		goto fail;
	}
	rg->cap = cap;
	rg->nslots = nslots;
	rg->id = id;
	if (cap) {
		int prot = PROT_READ | ((flags & SV2SHM_ATTACH_WRITABLE) ? PROT_WRITE : 0);
		void *d = mmap(NULL, (size_t)cap, prot, MAP_SHARED, data_fd, 0);
		if (d == MAP_FAILED) {
			r = errno == EPERM || errno == EACCES ? -EACCES : -ENOMEM;
			goto fail;
		}
		rg->data = d;
	}
	rg->ctl_fd = fcntl(ctl_fd, F_DUPFD_CLOEXEC, 0);
	rg->data_fd = fcntl(data_fd, F_DUPFD_CLOEXEC, 0);
	if (rg->ctl_fd < 0 || rg->data_fd < 0) {
		r = -errno;
		goto fail;
	}
	*out = rg;
	return 0;
fail:
	if (rg->data)
		munmap((void *)rg->data, (size_t)rg->cap);
	munmap((void *)(uintptr_t)ctl, sizeof(*ctl));
	if (rg->ctl_fd >= 0)
		close(rg->ctl_fd);
	if (rg->data_fd >= 0)
		close(rg->data_fd);
	free(rg);
	return r;
}

/* held[] words: 0 free, (gen << 1) | 1 held, gen << 1 (gen != 0) a release
 * of it running (region_release_slice). */
static bool held_releasing(uint64_t h)
{
	return h != 0 && !(h & 1u);
}

/* Record that this process let go of (slot, gen): our own copy, then the
 * ring's (slots.h), the one the producer reads. Ring regions only. */
static void region_record_release(struct sv2shm_region *r, unsigned slot, uint32_t gen)
{
	atomic_store_explicit(&r->released[slot & 63u], gen, memory_order_relaxed);
	slot_record_release(r->ring, slot, gen);
}

/* Has this process already let go of (slot, gen)? (Ring regions: our own
 * copy of the ring's records.) */
static bool region_released(struct sv2shm_region *r, unsigned slot, uint32_t gen)
{
	return r->ring && atomic_load_explicit(&r->released[slot & 63u], memory_order_relaxed) == gen;
}

/* Wait while a release of `slot` runs on another thread (its last steps:
 * the record, the wake decision). */
static void wait_released(struct sv2shm_region *r, unsigned slot)
{
	for (unsigned i = 1; held_releasing(atomic_load_explicit(&r->held[slot], memory_order_acquire)); i++) {
		cpu_relax();
		if ((i & 255u) == 0)
			sched_yield();
	}
}

SV2SHM_API int sv2shm_region_open(struct sv2shm_region *r, const uint8_t desc[SV2SHM_DESC_SIZE], unsigned holder,
				  struct sv2shm_slice *out)
{
	if (!r || !desc || !out || holder < 1 || holder >= SV2SHM_MAX_HOLDERS)
		return -EINVAL;
	struct sv2shm_desc d;
	int e = sv2shm_desc_decode(desc, &d);
	if (e < 0)
		return e;
	return region_open_desc(r, &d, holder, false, out);
}

/* Fill *out: a SHARED slice of r's slot `slot` at `gen`, held by `holder`. */
static void shared_slice(struct sv2shm_region *r, unsigned slot, uint32_t gen, uint64_t off, uint64_t len,
			 unsigned holder, struct sv2shm_slice *out)
{
	memset(out, 0, sizeof(*out));
	out->data = len ? (uint8_t *)(uintptr_t)(r->data + off) : NULL;
	out->len = (size_t)len;
	out->_owner = r;
	out->_gen = gen;
	out->_slot = (uint16_t)slot;
	out->_holder = (uint8_t)holder;
	out->_kind = SV2SHM_SLICE_SHARED;
}

int region_open_desc(struct sv2shm_region *r, const struct sv2shm_desc *dp, unsigned holder, bool from_ring,
		     struct sv2shm_slice *out)
{
	const struct sv2shm_desc d = *dp;
	if (d.kind != SV2SHM_DESC_POOL)
		return -EPROTO;
	if (d.region_id != r->id)
		return -ENXIO;
	if (d.slot >= r->nslots)
		return -ERANGE;
	/* Offset and length are bounded by our private capacity. */
	if (d.offset > r->cap || d.length > r->cap - d.offset)
		return -EFAULT;
	if (from_ring) {
		/* The entry came from our ring, which only the producer fills —
		 * the same producer that writes the control block, so reading
		 * its slot record would add no trust, only a cache line moved
		 * per slice. An entry the producer voided by removing us is
		 * caught by the ring's revoked word before we get here. */
		if (d.generation == 0)
			return -ESTALE;
	} else {
		/* The state word is the producer's view (consumers cannot write
		 * the control block): it names the slot's current generation
		 * and the consumers it went to. */
		uint64_t st = atomic_load_explicit(&((struct sv2shm_ctl *)(uintptr_t)r->ctl)->slots[d.slot].state,
						   memory_order_acquire);
		if (SV2SHM_STATE_GEN(st) != d.generation)
			return -ESTALE;
		if (!(SV2SHM_STATE_HOLDERS(st) & (UINT32_C(1) << holder)))
			return -EACCES;
	}
	/* Our own record: that generation was let go of already (a descriptor
	 * seen twice, the second time after its release). */
	if (region_released(r, d.slot, d.generation))
		return -ENOENT;
	/* The producer wrote the slot record before the state word (read with
	 * acquire above); the descriptor must name the same bytes. */
	if (!from_ring && (r->ctl->slots[d.slot].offset != d.offset || r->ctl->slots[d.slot].length != d.length))
		return -EFAULT;
	uint64_t mine = ((uint64_t)d.generation << 1) | 1u;
	for (;;) {
		uint64_t h = atomic_load_explicit(&r->held[d.slot], memory_order_acquire);
		if (h == 0) {
			/* Free. If a release just freed it (we read its last
			 * store, acquire), its record is visible now: a
			 * descriptor that came again while its own release ran
			 * on another thread is refused here, before the hold
			 * word says anything — once it names our generation, a
			 * stale copy's release could take it. Only this thread
			 * (ipc.h, "Threads") turns a free word into a hold, so
			 * the word is still free at the exchange. */
			if (region_released(r, d.slot, d.generation))
				return -ENOENT;
			uint64_t want = 0;
			if (atomic_compare_exchange_strong_explicit(&r->held[d.slot], &want, mine,
								    memory_order_acq_rel, memory_order_acquire))
				break;
			continue;
		}
		if (!held_releasing(h))
			return -EEXIST; /* the same descriptor twice: one hold, one slice */
		/* The previous generation's release is finishing on another
		 * thread (the producer saw its record and reused the slot):
		 * a few instructions, unless that thread is descheduled. */
		wait_released(r, d.slot);
	}
	shared_slice(r, d.slot, d.generation, d.offset, d.length, holder, out);
	return 0;
}

int region_open_ring(struct sv2shm_region *r, const uint64_t w[4], unsigned holder, struct sv2shm_slice *out)
{
	unsigned slot = (unsigned)(w[0] >> 16) & 0xffffu;
	uint32_t gen = (uint32_t)(w[0] >> 32);
	uint64_t off = w[2], len = w[3];
	/* region_open_desc()'s checks for an entry of our ring, in one go. */
	if ((w[0] & 0xffffu) != RING_POOL_WORD0 || w[1] != r->id || slot >= r->nslots || off > r->cap ||
	    len > r->cap - off || gen == 0)
		return 1;
	/* A free hold word becomes ours with a plain store: only the thread
	 * that pops the ring opens its slots (ipc.h, "Threads"), and other
	 * threads only ever change a word that is held (their release), which
	 * this one is not. A word held or releasing takes the general way.
	 * Read after it (acquire): the release that freed it recorded its
	 * generation first. */
	if (atomic_load_explicit(&r->held[slot], memory_order_acquire) != 0 || region_released(r, slot, gen))
		return 1;
	atomic_store_explicit(&r->held[slot], ((uint64_t)gen << 1) | 1u, memory_order_release);
	shared_slice(r, slot, gen, off, len, holder, out);
	return 0;
}

void region_drop_hold(struct sv2shm_region *r, const uint8_t raw[SV2SHM_DESC_SIZE])
{
	struct sv2shm_desc d;
	if (!r->ring || sv2shm_desc_decode(raw, &d) < 0 || d.kind != SV2SHM_DESC_POOL || d.region_id != r->id ||
	    d.slot >= r->nslots || d.generation == 0)
		return;
	/* A release of the slot's previous generation still running records
	 * that generation: let it finish, or it would overwrite ours. */
	wait_released(r, d.slot);
	if (atomic_load_explicit(&r->held[d.slot], memory_order_acquire) != 0)
		return; /* we hold it through a slice we opened: not this entry's */
	/* A generation we were not given changes nothing: the producer compares
	 * the record with the generation it published. */
	region_record_release(r, d.slot, d.generation);
}

int region_release_slice(struct sv2shm_region *r, unsigned slot, uint32_t gen)
{
	if (slot >= r->nslots)
		return -EINVAL;
	/* One exchange claims the release: the hold becomes "releasing"
	 * (generation << 1, low bit clear). A second release of a copy fails
	 * here, before it touches anything (-EALREADY). */
	uint64_t want = ((uint64_t)gen << 1) | 1u;
	if (!atomic_compare_exchange_strong_explicit(&r->held[slot], &want, (uint64_t)gen << 1, memory_order_acq_rel,
						     memory_order_acquire))
		return want == 0 || want == (uint64_t)gen << 1 ? -EALREADY : -ESTALE;
	/* Our whole side of the protocol: one store into our own ring, then the
	 * wake decision (slots.h). After the producer removed us the store is
	 * harmless: nobody reads it. */
	if (r->ring) {
		region_record_release(r, slot, gen);
		STAMP(STAMP_C_RELEASED);
		if (r->wake_producer && slot_waiter_needs_wake(&r->ring->waiting, &r->signaled_epoch))
			r->wake_producer(r);
	}
	/* Last touch of the region: region_busy() sees the slot until here, so
	 * detach cannot unmap the ring under the store above; an open of the
	 * slot's next generation (recv, which may already have it: the
	 * producer saw the record) waits for it. A plain store: nobody else
	 * writes a releasing word. */
	atomic_store_explicit(&r->held[slot], 0, memory_order_release);
	return 0;
}

bool region_busy(const struct sv2shm_region *r)
{
	for (unsigned s = 0; s < r->nslots; s++)
		if (atomic_load_explicit(&((struct sv2shm_region *)(uintptr_t)r)->held[s], memory_order_acquire))
			return true;
	return false;
}

SV2SHM_API int sv2shm_region_detach(struct sv2shm_region *r)
{
	if (!r)
		return 0;
	if (region_busy(r))
		return -EBUSY;
	if (r->data)
		munmap((void *)(uintptr_t)r->data, (size_t)r->cap);
	munmap((void *)(uintptr_t)r->ctl, sizeof(*r->ctl));
	close(r->ctl_fd);
	close(r->data_fd);
	free(r);
	return 0;
}

SV2SHM_API int sv2shm_region_fd(const struct sv2shm_region *r, int which)
{
	if (!r || (which != 0 && which != 1))
		return -EINVAL;
	return which == 0 ? r->ctl_fd : r->data_fd;
}
