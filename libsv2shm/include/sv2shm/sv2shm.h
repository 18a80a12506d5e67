/*
 * sv2shm — zero-copy message buffers for Stratum V2 processes.
 *
 * This header is the whole public in-process API: the buffer interface (the
 * seed crate buffer_sv2's `Buffer` and `Write` traits), the two buffers that
 * implement it (a growable system-memory buffer and the slot pool), slices, and
 * the Sv2 frame decoder built on the interface.
 *
 * Conventions
 *   - Every public name starts with sv2shm_ / SV2SHM_.
 *   - Functions returning int return 0 (or a documented non-negative value) on
 *     success and a negative errno value on failure; they never touch errno
 *     and never abort on bad input.
 *   - Functions returning a pointer return NULL on failure; the reason is
 *     available from the object they were called on (see
 *     sv2shm_buffer_last_error()).
 *   - Handles are opaque except struct sv2shm_buffer and struct sv2shm_slice,
 *     whose few public fields are documented; fields starting with '_' are
 *     private and may change in any release.
 *
 * Threads: a buffer (and the pool behind it) is used by one thread at a time —
 * the producer. Slices taken from it may be read and released on any thread.
 */
#ifndef SV2SHM_H
#define SV2SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SV2SHM_EXPORT __attribute__((visibility("default")))
#define SV2SHM_LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define SV2SHM_EXPORT
#define SV2SHM_LIKELY(x) (x)
#endif

#define SV2SHM_VERSION_MAJOR 0
#define SV2SHM_VERSION_MINOR 1
#define SV2SHM_VERSION_PATCH 0

/** Largest number of slots a pool can have (one bit each in a 64-bit mask). */
#define SV2SHM_MAX_SLOTS 64
/** The seed crate's fixed slot count (an AtomicU8), our default. */
#define SV2SHM_DEFAULT_SLOTS 8

/* ------------------------------------------------------------------------- */
/* Slices                                                                     */
/* ------------------------------------------------------------------------- */

/** Where a slice's bytes live. */
enum sv2shm_slice_kind {
	SV2SHM_SLICE_NONE = 0,   /**< zeroed or already released: holds nothing */
	SV2SHM_SLICE_EMPTY = 1,  /**< zero bytes, owns nothing */
	SV2SHM_SLICE_SYSTEM = 2, /**< a heap block (system memory), reference-counted: slices split
	                              off one buffer share it; freed with the last of them */
	SV2SHM_SLICE_POOL = 3,   /**< a slot of a pool's preallocated region */
	SV2SHM_SLICE_SHARED = 4, /**< a slot of a shared region, received by a consumer (ipc.h) */
	SV2SHM_SLICE_MAPPED = 5, /**< an alloc-mode slice received in its own memfd (ipc.h) */
};

/**
 * A contiguous run of bytes handed out by sv2shm_buffer_get_data_owned().
 *
 * Public fields: `data` and `len` (the bytes, readable and writable by the
 * holder — the seed's AsMut<[u8]>). A pool slice's bytes never change while it
 * is live and never overlap another live slice. A slice must be released
 * exactly once with sv2shm_slice_release(), from any thread.
 *
 * A slice is a value (like struct iovec): copying the struct does not copy the
 * bytes. Releasing a pool slice twice, through any copy, is detected and
 * refused (generation per slot). Releasing a copy of an already released
 * system-memory slice is a double free, exactly like free().
 */
struct sv2shm_slice {
	uint8_t *data; /**< first byte (NULL when len == 0) */
	size_t len;    /**< number of bytes */
	/* private */
	void *_owner;    /* pool for POOL slices, heap block for SYSTEM slices */
	uint32_t _gen;   /* slot generation at claim time */
	uint16_t _slot;  /* slot index */
	uint8_t _kind;   /* enum sv2shm_slice_kind */
	uint8_t _holder; /* holder bit of a SHARED slice */
};

/**
 * Release a slice: its slot (pool) becomes free, or its reference to a heap
 * block (system memory) goes (the block is freed with its last reference). Safe to call from any thread, concurrently with the producer. On
 * success the struct is cleared (kind NONE).
 *
 * Returns 0, or
 *   -EINVAL    s is NULL or its private fields are corrupt (bad kind or slot);
 *   -EALREADY  this slice (or a copy of it) was already released, or s holds
 *              nothing (kind NONE);
 *   -ESTALE    the slice's slot has since been reused for another slice (the
 *              generation differs): a release of a long-gone copy.
 * A refused release changes nothing: the pool's slot mask stays intact.
 * One exception, for a SHARED slice (ipc.h) whose hold the producer already
 * reclaimed (it removed this consumer): -EALREADY or -ESTALE is returned, but
 * the slice is released locally and the struct cleared, so the consumer can
 * still be freed.
 */
SV2SHM_EXPORT int sv2shm_slice_release(struct sv2shm_slice *s);

/** The slice's kind (enum sv2shm_slice_kind); SV2SHM_SLICE_NONE for NULL. */
SV2SHM_EXPORT int sv2shm_slice_kind(const struct sv2shm_slice *s);

/* ------------------------------------------------------------------------- */
/* The buffer interface (the seed's Buffer + Write traits)                   */
/* ------------------------------------------------------------------------- */

struct sv2shm_buffer;

/* Private: the operations a buffer kind implements. Only the slow paths go
 * through this table; the common case of get_writable is inline. */
struct sv2shm_buffer_ops {
	void *(*get_writable_slow)(struct sv2shm_buffer *b, size_t len);
	int (*get_data_owned)(struct sv2shm_buffer *b, struct sv2shm_slice *out);
	bool (*is_droppable)(const struct sv2shm_buffer *b);
	int (*split_owned)(struct sv2shm_buffer *b, size_t n, struct sv2shm_slice *out);
};

/**
 * The buffer interface. Obtain one from sv2shm_pool_buffer() or
 * sv2shm_sysbuf_buffer(); code written against it runs on either.
 * All fields are private; they are in the header only so that the hot path of
 * sv2shm_buffer_get_writable() can be inlined.
 */
struct sv2shm_buffer {
	uint8_t *_base; /* first byte of the slice being written */
	size_t _len;    /* bytes written so far (the seed's len()) */
	size_t _room;   /* bytes writable at _base without the slow path */
	size_t _start;  /* danger_set_start() index */
	int _error;     /* last error (negative errno) */
	const struct sv2shm_buffer_ops *_ops;
};

/**
 * get_writable(len): return `len` writable bytes right after what was
 * already written to the current slice, and grow the written length by len.
 * The returned pointer stays valid until the next call on this buffer.
 *
 * The pool's common case — room left in its current mode — is this inline
 * function: a compare and an add, no atomic operation.
 *
 * Returns NULL on failure, with sv2shm_buffer_last_error() set to
 *   -EOVERFLOW  len would make the slice longer than SIZE_MAX;
 *   -ENOMEM     system memory could not be allocated (alloc mode, or the
 *               system-memory buffer);
 *   -EAGAIN     the pool is full and its policy is SV2SHM_POOL_FAIL;
 *   -ETIMEDOUT  the pool stayed full for wait_timeout_ms (SV2SHM_POOL_WAIT);
 *   -EMSGSIZE   the slice is larger than the pool's whole capacity (policies
 *               FAIL and WAIT: no release could ever make room).
 * On failure the bytes written so far are kept.
 */
static inline void *sv2shm_buffer_get_writable(struct sv2shm_buffer *b, size_t len)
{
	if (SV2SHM_LIKELY(len <= b->_room - b->_len)) {
		uint8_t *p = b->_base + b->_len;
		b->_len += len;
		return p;
	}
	return b->_ops->get_writable_slow(b, len);
}

/**
 * get_data_owned(): hand the written bytes (from the danger_set_start()
 * index to len()) out as a slice, and start a fresh, empty one.
 * With nothing written, *out is an EMPTY slice (still to be released, a no-op).
 *
 * Returns 0, or -EINVAL if b or out is NULL.
 */
SV2SHM_EXPORT int sv2shm_buffer_get_data_owned(struct sv2shm_buffer *b, struct sv2shm_slice *out);

/**
 * split_owned(n): hand out the first n written bytes (counted from the
 * danger_set_start() index) as a slice, and keep the rest where it is as the
 * start of the next slice (its danger_set_start() index is 0). Nothing is
 * copied on a pool: the piece takes a slot of its own and the rest stays in
 * place, so a reader can fill the buffer with one read() and hand out every
 * complete frame in it. (In alloc mode, when the bytes are in system memory
 * already, the rest is copied back into the pool once it fits there again,
 * so that a reader does not stay in alloc mode for good.) On the system-memory buffer the piece shares the heap
 * block with the rest (reference-counted, freed with its last slice).
 * With n == len() - start this is get_data_owned().
 *
 * Returns 0, or
 *   -EINVAL     b or out is NULL, n == 0, or n > len() - start;
 *   -EAGAIN     a pool with no free slot for the piece (SV2SHM_POOL_FAIL);
 *   -ETIMEDOUT  no slot freed within wait_timeout_ms (SV2SHM_POOL_WAIT);
 *   -ENOMEM     system memory ran out (SV2SHM_POOL_FALLBACK copies the piece
 *               to system memory when no slot is free).
 * On failure nothing changes: every written byte is kept.
 * After a split with bytes left, get_data_owned() on a pool may also return
 * -EAGAIN or -ETIMEDOUT (the rest has no slot yet).
 */
SV2SHM_EXPORT int sv2shm_buffer_split_owned(struct sv2shm_buffer *b, size_t n, struct sv2shm_slice *out);

/**
 * get_data_by_ref(len): a view of the first min(len, len()) written bytes of
 * the current slice, counted from the danger_set_start() index. Valid until
 * the next call that writes to or takes from the buffer. Sets *out_len to the
 * view's length when out_len is not NULL.
 *
 * Returns the view (a non-NULL pointer even for an empty view), or NULL if b
 * is NULL.
 */
SV2SHM_EXPORT uint8_t *sv2shm_buffer_get_data_by_ref(struct sv2shm_buffer *b, size_t len, size_t *out_len);

/** len(): bytes written to the current slice (0 for NULL). */
static inline size_t sv2shm_buffer_len(const struct sv2shm_buffer *b)
{
	return b ? b->_len : 0;
}

/**
 * danger_set_start(index): the first `index` written bytes are skipped by
 * get_data_by_ref() and get_data_owned() (the seed uses it after decrypting in
 * place). Reset to 0 by get_data_owned(). Unlike the seed, the index is
 * checked.
 *
 * Returns 0, or -EINVAL if b is NULL or index > len().
 */
SV2SHM_EXPORT int sv2shm_buffer_danger_set_start(struct sv2shm_buffer *b, size_t index);

/**
 * is_droppable(): true when the buffer can be destroyed now — always for the
 * system-memory buffer; for a pool, when no pool slice is live.
 */
SV2SHM_EXPORT bool sv2shm_buffer_is_droppable(const struct sv2shm_buffer *b);

/**
 * write(src, n): the seed's Write::write — append n bytes from src to the
 * current slice. A buffer grows, so a successful write takes every byte.
 *
 * Returns n (as ssize_t), or a negative errno as get_writable() (-EINVAL for a
 * NULL b, or NULL src with n > 0).
 */
SV2SHM_EXPORT ssize_t sv2shm_buffer_write(struct sv2shm_buffer *b, const void *src, size_t n);

/**
 * write_all(src, n): the seed's Write::write_all — append all n bytes or none.
 *
 * Returns 0, or a negative errno as sv2shm_buffer_write().
 */
SV2SHM_EXPORT int sv2shm_buffer_write_all(struct sv2shm_buffer *b, const void *src, size_t n);

/** The last error a call on this buffer reported (negative errno), 0 if none. */
SV2SHM_EXPORT int sv2shm_buffer_last_error(const struct sv2shm_buffer *b);

/* ------------------------------------------------------------------------- */
/* System-memory buffer (the seed's BufferFromSystemMemory)                  */
/* ------------------------------------------------------------------------- */

struct sv2shm_sysbuf;

/**
 * Create a growable heap buffer. Every get_data_owned() gives its bytes away
 * as a SYSTEM slice. `hint` preallocates that many bytes for the first slice
 * (0 is fine).
 *
 * Returns 0 and sets *out, or -EINVAL (out NULL), -ENOMEM.
 */
SV2SHM_EXPORT int sv2shm_sysbuf_new(size_t hint, struct sv2shm_sysbuf **out);

/** Free the buffer (not the slices it handed out). NULL is a no-op. */
SV2SHM_EXPORT void sv2shm_sysbuf_free(struct sv2shm_sysbuf *sb);

/** Its buffer interface (NULL for NULL). */
SV2SHM_EXPORT struct sv2shm_buffer *sv2shm_sysbuf_buffer(struct sv2shm_sysbuf *sb);

/* ------------------------------------------------------------------------- */
/* Buffer pool (the seed's BufferPool)                                        */
/* ------------------------------------------------------------------------- */

struct sv2shm_pool;

/** The seed's three modes. */
enum sv2shm_pool_mode {
	SV2SHM_MODE_BACK = 0,  /**< slices go after the newest slice of the back run */
	SV2SHM_MODE_FRONT = 1, /**< slices go at the start of the region, below the back run */
	SV2SHM_MODE_ALLOC = 2, /**< slices go to system memory: the pool is full */
};

/** What the pool does when neither back nor front has room or a free slot. */
enum sv2shm_pool_policy {
	SV2SHM_POOL_FALLBACK = 0, /**< the seed's: serve from system memory (alloc mode) */
	SV2SHM_POOL_FAIL = 1,     /**< fail get_writable() with -EAGAIN */
	SV2SHM_POOL_WAIT = 2,     /**< sleep until a release frees room (no busy polling), up to
	                               wait_timeout_ms; then fail with -ETIMEDOUT */
};

/** Options for sv2shm_pool_new(); zero-initialise, then set what you need. */
struct sv2shm_pool_options {
	uint64_t capacity; /**< bytes preallocated, 0 .. 2^32 (0 is valid: all slices go to system memory) */
	unsigned slots;    /**< 1 .. 64; 0 means SV2SHM_DEFAULT_SLOTS (8) */
	int policy;        /**< enum sv2shm_pool_policy */
	int wait_timeout_ms; /**< SV2SHM_POOL_WAIT: longest wait per get_writable(); < 0 = forever */
	unsigned wait_spin_us; /**< SV2SHM_POOL_WAIT: watch the slot mask this long before sleeping
	                            (a release seen while spinning costs no wake-up); 0 = 50 us,
	                            SV2SHM_SPIN_NONE = sleep at once */
};

/** A spin budget meaning "never spin, sleep at once". */
#define SV2SHM_SPIN_NONE UINT32_MAX

/** Largest pool capacity accepted (the seed fuzzes 0 .. 2^32). */
#define SV2SHM_POOL_MAX_CAPACITY (UINT64_C(1) << 32)

/**
 * Create a pool over `capacity` preallocated bytes with `slots` slots.
 *
 * Returns 0 and sets *out, or
 *   -EINVAL  out or opts NULL, slots > 64, capacity > 2^32, unknown policy;
 *   -ENOMEM  the region or the pool could not be allocated (never an abort).
 */
SV2SHM_EXPORT int sv2shm_pool_new(const struct sv2shm_pool_options *opts, struct sv2shm_pool **out);

/**
 * Destroy the pool. Refused while any of its slices is live (the seed spins
 * forever there): release them first — sv2shm_buffer_is_droppable() tells.
 * The slice being written (not yet taken) is discarded.
 *
 * Returns 0 (p freed; NULL is a no-op), -EBUSY (slices live; nothing freed),
 * or -EINVAL (the pool of a producer: use sv2shm_producer_destroy()).
 */
SV2SHM_EXPORT int sv2shm_pool_destroy(struct sv2shm_pool *p);

/** The pool's buffer interface (NULL for NULL). */
SV2SHM_EXPORT struct sv2shm_buffer *sv2shm_pool_buffer(struct sv2shm_pool *p);

/** The pool behind a buffer, or NULL if b is not a pool's buffer. */
SV2SHM_EXPORT struct sv2shm_pool *sv2shm_pool_from_buffer(struct sv2shm_buffer *b);

/** Current mode (enum sv2shm_pool_mode), or -EINVAL for NULL. */
SV2SHM_EXPORT int sv2shm_pool_mode(const struct sv2shm_pool *p);

/** Name of a mode: "BACK MODE", "FRONT MODE", "ALLOC MODE" (as the seed draws it), or "?". */
SV2SHM_EXPORT const char *sv2shm_pool_mode_name(int mode);

/**
 * The slot map as the seed draws it: one character per slot, '-' for a free
 * slot, otherwise a character naming the slice: the n-th slice the pool ever
 * claimed, counting '1'..'9', then 'a'..'z', then 'A'..'Z', and wrapping
 * after 61 — so a test can print "1234----" step by step.
 * Writes slots+1 bytes (with the NUL) when size allows.
 *
 * Returns the number of slots, or -EINVAL (NULL p or buf), -ENOSPC (size < slots + 1).
 */
SV2SHM_EXPORT int sv2shm_pool_slot_map(const struct sv2shm_pool *p, char *buf, size_t size);

/** Counters (monotonic since creation). */
struct sv2shm_pool_stats {
	uint64_t from_pool;    /**< slices served from the preallocated region */
	uint64_t from_system;  /**< slices served from system memory (alloc mode) */
	uint64_t mode_switches;/**< changes of mode */
	uint64_t resets;       /**< times the pool restarted at offset 0 with every slot free */
	uint64_t moves;        /**< slices moved while being written (did not fit where they started) */
	uint64_t waits;        /**< times get_writable() slept for a release (SV2SHM_POOL_WAIT) */
	uint64_t refused_releases; /**< double or stale releases refused */
	uint64_t live;         /**< pool slices live now */
	unsigned slots;        /**< slot count */
	uint64_t capacity;     /**< region size in bytes */
	uint64_t mask;         /**< current slot mask (bit i = slot i taken) */
};

/** Fill *out with the pool's counters. Returns 0, or -EINVAL for NULL. */
SV2SHM_EXPORT int sv2shm_pool_stats(const struct sv2shm_pool *p, struct sv2shm_pool_stats *out);

/** Byte range of slot `slot`'s live slice: for tests and tools.
 * Returns 1 (live; *off and *len set), 0 (slot free), or -EINVAL. */
SV2SHM_EXPORT int sv2shm_pool_slot_range(const struct sv2shm_pool *p, unsigned slot, uint64_t *off, uint64_t *len);

/* Tracing (the seed's `debug` feature). --------------------------------- */

/** Traced events. */
enum sv2shm_trace_event {
	SV2SHM_TRACE_CLAIM = 1,   /**< a slot was claimed: slot, offset, length */
	SV2SHM_TRACE_RELEASE = 2, /**< a slot was released: slot, offset, length */
	SV2SHM_TRACE_MODE = 3,    /**< the mode changed: from (offset), to (length) */
	SV2SHM_TRACE_RESET = 4,   /**< every slot was free: the pool restarted at 0 */
	SV2SHM_TRACE_SYSTEM = 5,  /**< a slice was served from system memory: length */
};

/** One trace record. */
struct sv2shm_trace_record {
	uint64_t time_ns; /**< CLOCK_MONOTONIC */
	int event;        /**< enum sv2shm_trace_event */
	int slot;         /**< slot index, -1 when none */
	uint64_t a, b;    /**< event data, see enum sv2shm_trace_event */
};

/** A trace callback; may be called from any thread that releases a slice. */
typedef void (*sv2shm_trace_fn)(const struct sv2shm_pool *p, const struct sv2shm_trace_record *rec, void *user);

/**
 * Route the pool's trace to fn(user) instead of stderr (fn NULL: back to
 * stderr). Only in a build with -Dtrace=true; otherwise tracing is compiled
 * out and this returns -ENOTSUP.
 *
 * Returns 0, or -EINVAL (NULL p), -ENOTSUP (tracing compiled out).
 * Set it before slices are released on other threads.
 */
SV2SHM_EXPORT int sv2shm_pool_set_trace(struct sv2shm_pool *p, sv2shm_trace_fn fn, void *user);

/** True when the library was built with tracing (-Dtrace=true). */
SV2SHM_EXPORT bool sv2shm_trace_enabled(void);

/* ------------------------------------------------------------------------- */
/* Sv2 frame decoder                                                           */
/* ------------------------------------------------------------------------- */

/** Size of a plain Sv2 frame header. */
#define SV2SHM_FRAME_HEADER_SIZE 6
/** Largest msg_length a header can carry (u24). */
#define SV2SHM_FRAME_MAX_PAYLOAD 0xffffffu
/** Bit 15 of extension_type: the message is a channel message. */
#define SV2SHM_FRAME_CHANNEL_BIT 0x8000u

/** A decoded frame. `slice` holds the whole frame, header included. */
struct sv2shm_frame {
	uint16_t extension_type; /**< with the channel bit */
	uint8_t msg_type;
	uint32_t msg_length;     /**< payload bytes */
	bool channel_msg;        /**< bit 15 of extension_type */
	struct sv2shm_slice slice; /**< header + payload; release it when done */
};

struct sv2shm_frame_decoder;

/**
 * Create a decoder that fills `buf` (a pool or system-memory buffer, used only
 * by this decoder from now on) the way the seed's codec does: 6 header bytes,
 * then the payload, then takes the frame out with get_data_owned().
 * `max_payload` rejects longer frames (0 means SV2SHM_FRAME_MAX_PAYLOAD).
 *
 * Returns 0 and sets *out, or -EINVAL (NULL buf or out, max_payload > 2^24-1),
 * -ENOMEM.
 */
SV2SHM_EXPORT int sv2shm_frame_decoder_new(struct sv2shm_buffer *buf, uint32_t max_payload,
					   struct sv2shm_frame_decoder **out);

/** Free the decoder (a partial frame is discarded; the buffer is not freed). */
SV2SHM_EXPORT void sv2shm_frame_decoder_free(struct sv2shm_frame_decoder *d);

/**
 * Feed bytes from memory. Consumes bytes until a frame is complete or the
 * input ends; *consumed (required) says how many were used — feed the rest
 * again after handling the frame.
 *
 * Returns 1 (a frame is in *out; its slice is the caller's), 0 (all input
 * consumed, frame not complete yet), or
 *   -EINVAL    NULL argument (data may be NULL when len is 0);
 *   -EMSGSIZE  permanent: the header announces more than max_payload bytes,
 *              the stream is malformed; the decoder stays in this error state
 *              and every later call returns -EMSGSIZE again;
 *   retryable (the header is kept, sv2shm_frame_decoder_in_frame() stays
 *   true, call again later with the rest of the input):
 *   -EAGAIN    the pool is full (SV2SHM_POOL_FAIL): retry after releases;
 *   -ETIMEDOUT the pool stayed full for wait_timeout_ms (SV2SHM_POOL_WAIT);
 *   -ENOBUFS   the frame is larger than the pool's whole capacity (FAIL or
 *              WAIT): no release makes room in this pool;
 *   -ENOMEM    system memory ran out.
 */
SV2SHM_EXPORT int sv2shm_frame_decoder_feed(struct sv2shm_frame_decoder *d, const void *data, size_t len,
					    size_t *consumed, struct sv2shm_frame *out);

/**
 * Read from fd (blocking or non-blocking) until a frame is complete.
 * Frames split across any number of reads are reassembled.
 *
 * Returns 1 (a frame is in *out), 0 (fd is non-blocking and has no more data
 * now: call again when readable), or
 *   -ENODATA   end of stream at a frame boundary (clean end);
 *   -EPROTO    end of stream inside a frame (truncated stream);
 *   -EMSGSIZE  as for feed() (permanent);
 *   -EINVAL, and the retryable -EAGAIN, -ETIMEDOUT, -ENOBUFS, -ENOMEM as for
 *   feed(), or the read's own -errno.
 */
SV2SHM_EXPORT int sv2shm_frame_decoder_read_fd(struct sv2shm_frame_decoder *d, int fd, struct sv2shm_frame *out);

/** What a decoder did so far (sv2shm_frame_decoder_stats()). */
struct sv2shm_frame_decoder_stats {
	uint64_t reads;  /**< read() calls made by sv2shm_frame_decoder_read_fd() (EAGAIN and EOF included) */
	uint64_t bytes;  /**< bytes they returned */
	uint64_t frames; /**< frames handed out (by read_fd() and feed()) */
};

/** Fill *out with the decoder's counts. Returns 0, or -EINVAL for a NULL argument. */
SV2SHM_EXPORT int sv2shm_frame_decoder_stats(const struct sv2shm_frame_decoder *d,
					     struct sv2shm_frame_decoder_stats *out);

/** True when a frame has been started but not completed, or read_fd() has
 * bytes read but not handed out yet. */
SV2SHM_EXPORT bool sv2shm_frame_decoder_in_frame(const struct sv2shm_frame_decoder *d);

/**
 * Write a 6-byte Sv2 header for a payload of msg_length bytes into hdr.
 * Returns 0, or -EINVAL (NULL hdr), -EMSGSIZE (msg_length > 2^24-1).
 */
SV2SHM_EXPORT int sv2shm_frame_header_encode(uint8_t hdr[SV2SHM_FRAME_HEADER_SIZE], uint16_t extension_type,
					     uint8_t msg_type, uint32_t msg_length);

/** Readable name of a negative errno this library returns (strerror-like, never NULL). */
SV2SHM_EXPORT const char *sv2shm_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* SV2SHM_H */
