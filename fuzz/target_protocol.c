/*
 * `protocol`: the broker daemon's logic (daemon/broker.c) fed arbitrary
 * sequences of connections, messages (with and without fds), process deaths,
 * timers and socket states, through a fake `struct broker_env` (no sockets,
 * no event loop), and compared after every call with a model written from the
 * protocol's rules (libsv2shm/src/broker_wire.h, daemon/broker.h).
 *
 * The world: 6 processes (pids 4001..4006, uid/gid from the input: uid 1000
 * twice, 1001, 0, 1002, 1001 by default), up to 8 connections the operations
 * address (each belongs to a process and has its credentials) plus up to 1092
 * "bulk" connections for the limits. A process can die (its process watches
 * become due; the loop delivers them when the input says), be respawned with
 * the same pid (pid reuse), and the broker's watches follow an incarnation,
 * as pidfds do. Fds attached to messages are real: control memfds made as
 * the library makes them (pool_ctl_init() in a memfd of sizeof(struct
 * sv2shm_ctl), sealed SHRINK|GROW|SEAL|FUTURE_WRITE after the producer's own
 * writable mapping), ring memfds of ring_bytes(n) with the ring header, or
 * wrong ones (unsealed, a seal missing, wrong size, corrupt header, another
 * pool's ring, a pipe, /dev/null, a socket, a directory, a plain file, a
 * read-only or write-only reopen, a memfd that cannot be sealed). Bulk
 * operations reach the limits (256 pools, 1024 clients, 31 consumers and 31
 * subscriptions in flight per pool, 8 per client). The harness keeps its
 * writable view of every control block and ring it hands over, so the input
 * can "publish" (write slot states, claims, counters) and check what the
 * broker reads and writes there.
 *
 * The model (`m_*`, a second, independent implementation of the broker's
 * documented behaviour at the level of clients, pools, pending
 * subscriptions and consumer records) runs first on every operation and
 * writes down what must happen: each message the broker must send (to whom,
 * opcode, seq, result, fields, with or without an fd, and what the env
 * answers), each process watch it must ask for, each connection it must
 * close. The env's callbacks then check every call the real broker makes
 * against that list, in order, per connection, and the end of the call
 * checks that nothing was left out.
 *
 * Invariants, after every call into the broker and at the end:
 *   - no crash, no UB, no leak (ASan, UBSan, LeakSanitizer);
 *   - every message is well-formed (magic, version, length == bmsg_size() of
 *     a broker->client opcode, NUL-terminated texts, valid names, zero
 *     reserved fields), goes to a connected client, carries seq 0 when
 *     unsolicited (INTRODUCE, POOL_GONE) or the request's seq; INTRODUCE and
 *     a SUBSCRIBED with result 0 carry exactly one fd, a socket (the
 *     SUBSCRIBED one the peer of the INTRODUCE one: a byte goes through),
 *     every other message none; results are 0 or -1..-4095;
 *   - the replies are the model's: every request is answered once
 *     (CONSUMER_GONE and INTRODUCED with an unknown token never), REGISTER
 *     -EEXIST / -ENOSPC / takeover, UNREGISTER -ENOENT / -EPERM, SUBSCRIBE
 *     -ENOENT / -EACCES / -EMFILE / -EAGAIN or an INTRODUCE to the pool's
 *     producer, SUBSCRIBED after INTRODUCED (the producer's id and holder, or
 *     its -errno, or -EPROTO), -ETIMEDOUT at the deadline, -ENOENT when the
 *     pool goes first, POOL_GONE to each consumer's client, the STATUS stream
 *     (the pools the requester may see, in registration order, each followed
 *     by its consumers, the slot map and counters read from the control
 *     block, then STATUS_END), REATTACH_* results; broker_refused() counts
 *     what the model counts;
 *   - a malformed message (size, magic, version, direction, fd count, name,
 *     field, control block or ring) is answered with a RESULT error and
 *     counts; the eighth closes the connection, and nothing else but a full
 *     or broken socket, a process exit or a hang-up does;
 *   - when a consumer's process exits, the broker writes into its ring, and
 *     only there, released[s] = generation for exactly the slots the control
 *     block shows it holding; no other ring changes in any call;
 *   - limits: pools <= 256, consumer records per pool <= 31 (counted from the
 *     broker's process watches), clients <= 1024; broker_pools() and
 *     broker_clients() agree with the model; a pending subscription always
 *     has a deadline set no later than its own, and after a timer the next
 *     deadline is in the future (else the loop would spin);
 *   - broker_handle_message() returns -EPIPE exactly when its client was
 *     closed, 1 exactly when a STATUS stream waits (want_writable asked),
 *     else 0; broker_client_writable() resumes reading exactly when the
 *     stream ended;
 *   - every process watch the broker asks for is released when its record
 *     goes (never twice), every connection closed once;
 *   - fds: every fd handed to the broker is closed when the call returns (or
 *     kept, at most one per pool or consumer record); after broker_free()
 *     the process has exactly the fds it had before the input, and (under
 *     ASan) the heap is back to where it was.
 *
 * Input: [cfg] [creds x 6] then operations, each an opcode byte (% 16, see
 * enum op below) and its arguments. make_corpus.py writes the seeds.
 *   cfg: bits 0-1 subscribe timeout {default 5000, 100, 1000, 30000} ms,
 *        bits 2-3 first token {1, 1000, 2^32, 2^64 - 3}
 *   creds: 0 = the default, else uid {0,1000,1001,1002}[b & 3],
 *          gid {0,1000,1001,2000}[(b >> 2) & 3]
 *
 * SV2SHM_FUZZ_VERBOSE=1 traces every operation and shows the broker's log.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "broker_wire.h"
#include "fuzz_common.h"
#include "layout.h"
#include "log.h"
#include "pool.h"
#include "region.h"
#include "targets.h"
#include "wire.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROTO_ASAN 1
#endif
#endif
#if !defined(PROTO_ASAN) && defined(__SANITIZE_ADDRESS__)
#define PROTO_ASAN 1
#endif
#ifdef PROTO_ASAN
/* <sanitizer/allocator_interface.h>, which gcc does not ship */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define NPROC 6
#define NCONN_I 8     /* connections the operations address */
#define NCONN 1100    /* with the bulk ones (more than BROKER_MAX_CLIENTS) */
#define NWATCH 12000
#define NTABLE 8
#define NBULK 300     /* bulk pool names: more than BROKER_MAX_POOLS */
#define NEXTRA 256
#define NNAMES (NTABLE + NBULK + NEXTRA)
#define NPEND 4096
#define NCONS 4096
#define NFDREC 2048
#define NEV 20000
#define NTOKENS 64
#define MAX_OPS 400
#define MAX_BULK 1400 /* bulk steps per input: enough to reach any one limit */
#define RING_HDR offsetof(struct sv2shm_ring, slots)
#define CTL_SEALS_ALL REGION_CTL_SEALS /* as region_create() seals it */
#define ERRNO_MAX 4095

/* --- checks --------------------------------------------------------------- */

static FILE *devnull;
static FILE *saved_stderr;
static bool verbose;

/* The broker logs to stderr: to /dev/null while it runs (unless verbose). */
static void quiet_begin(void)
{
	if (!verbose && devnull && !saved_stderr) {
		saved_stderr = stderr;
		stderr = devnull;
	}
}

static void quiet_end(void)
{
	if (saved_stderr) {
		stderr = saved_stderr;
		saved_stderr = NULL;
	}
}

#define CHECK(cond, ...)                                                                                           \
	do {                                                                                                       \
		if (!(cond)) {                                                                                     \
			quiet_end();                                                                               \
			fz_fail(__FILE__, __LINE__, "check failed: " #cond ": " __VA_ARGS__);                     \
		}                                                                                                  \
	} while (0)

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
	if (!verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(saved_stderr ? saved_stderr : stderr, "[protocol] ");
	vfprintf(saved_stderr ? saved_stderr : stderr, fmt, ap);
	fputc('\n', saved_stderr ? saved_stderr : stderr);
	va_end(ap);
}

/* --- names ---------------------------------------------------------------- */

static const char *const table_names[NTABLE] = {
	"pool", "mining.jobs", "sv2-templates", "X_1", "..", "a", "0123456789", "pool2",
};

static char names[NNAMES][BMSG_NAME_MAX];
static uint64_t name_hash[NNAMES];
static unsigned nextra;

static void names_init(void)
{
	memset(names, 0, sizeof(names));
	for (unsigned i = 0; i < NTABLE; i++)
		memcpy(names[i], table_names[i], strlen(table_names[i]));
	for (unsigned i = 0; i < NBULK; i++)
		snprintf(names[NTABLE + i], BMSG_NAME_MAX, "bulk-%03u", i);
	for (unsigned i = 0; i < NTABLE + NBULK; i++)
		name_hash[i] = fz_hash((const uint8_t *)names[i], BMSG_NAME_MAX);
	nextra = 0;
}

/* The index of a valid name (added when new), -1 for an invalid one, -2
 * when the table is full. */
static int name_id(const char raw[BMSG_NAME_MAX])
{
	if (!bmsg_name_ok(raw))
		return -1;
	uint64_t h = fz_hash((const uint8_t *)raw, BMSG_NAME_MAX);
	for (unsigned i = 0; i < NTABLE + NBULK + nextra; i++)
		if (name_hash[i] == h && memcmp(names[i], raw, BMSG_NAME_MAX) == 0)
			return (int)i;
	if (nextra == NEXTRA)
		return -2;
	memcpy(names[NTABLE + NBULK + nextra], raw, BMSG_NAME_MAX);
	name_hash[NTABLE + NBULK + nextra] = h;
	return (int)(NTABLE + NBULK + nextra++);
}

static uint64_t region_of(int name, unsigned gen)
{
	return UINT64_C(0x5e9100000000) + (uint64_t)name * 4u + gen;
}

/* --- processes and watches ------------------------------------------------ */

struct proc {
	int32_t pid;
	uint32_t uid, gid;
	bool alive;
	unsigned inc; /* incarnation: a respawn reuses the pid */
};

enum { W_CLIENT = 1, W_CONSUMER = 2 };

struct watch {
	bool used;
	int proc;
	unsigned inc;
	void *cookie;
	int kind, ref; /* W_CLIENT: a connection; W_CONSUMER: a model consumer */
};

static struct proc procs[NPROC];
static struct watch watches[NWATCH];
static unsigned nwatch_hi, nwatch_used;
static unsigned wfree[NWATCH], nwfree;
static unsigned cons_watches[NNAMES]; /* consumer records' watches per pool */

static const uint32_t def_uid[NPROC] = {1000, 1000, 1001, 0, 1002, 1001};
static const uint32_t def_gid[NPROC] = {1000, 1000, 1001, 0, 1000, 2000};
static const uint32_t uid_pick[4] = {0, 1000, 1001, 1002};
static const uint32_t gid_pick[4] = {0, 1000, 1001, 2000};

static void set_creds(int i, uint8_t b)
{
	procs[i].uid = b ? uid_pick[b & 3] : def_uid[i];
	procs[i].gid = b ? gid_pick[(b >> 2) & 3] : def_gid[i];
}

static bool watch_alive(int w)
{
	const struct watch *x = &watches[w];
	return procs[x->proc].alive && procs[x->proc].inc == x->inc;
}

static int proc_by_pid(int32_t pid)
{
	for (int i = 0; i < NPROC; i++)
		if (procs[i].pid == pid && procs[i].alive)
			return i;
	return -1;
}

/* --- connections ---------------------------------------------------------- */

struct conn {
	/* the environment's side */
	bool open;
	struct client *c;
	int proc;
	unsigned inc;
	struct broker_creds cr;
	int watch;       /* its client watch */
	int fail;        /* what send() answers: 0 or -errno */
	int room;        /* stream_room(): messages left, -1 unlimited */
	bool wantw_fail; /* want_writable() fails */
	bool want_w;     /* the broker asked for writability */
	bool resumed;
	bool closed_now;
	unsigned strikes; /* malformed messages sent (by the harness's rules) */
	/* the model */
	bool m_open, m_dead;
	int m_room;
	unsigned m_bad, m_npending;
	bool m_paused;
};

static struct conn conns[NCONN];
static unsigned nconn_hi;
/* Connections a call touched (the interactive ones are always checked). */
static int dirty[NCONN];
static bool is_dirty[NCONN];
static unsigned ndirty;

static void touch(int ci)
{
	if (ci >= NCONN_I && !is_dirty[ci]) {
		is_dirty[ci] = true;
		dirty[ndirty++] = ci;
	}
}

static int conn_index(const void *conn)
{
	const struct conn *k = conn;
	CHECK(k >= conns && k < conns + NCONN, "unknown connection %p", conn);
	return (int)(k - conns);
}

/* --- fds ------------------------------------------------------------------ */

enum {
	FK_CTL = 1, /* a control block */
	FK_RING,    /* a ring */
	FK_OTHER,   /* anything else */
};

struct fdrec {
	int kind;
	/* valid control block of this geometry (broker: map_ctl() succeeds) */
	bool ctl_ok;
	uint64_t cap, region;
	uint32_t slots;
	/* valid ring of this region (broker: map_ring() succeeds) */
	bool ring_ok;
	uint64_t ring_region;
	void *map; /* the harness's writable view (control block or ring header) */
	size_t map_len;
};

static struct fdrec fdrecs[NFDREC];
static unsigned nfdrec;
static int held_fds[64]; /* fds the harness keeps (bulk templates) */
static unsigned nheld;
/* fds handed to the broker that it kept (none today: it maps and closes) */
struct kept {
	int fd;
	dev_t dev;
	ino_t ino;
};
static struct kept kept_fds[NFDREC];
static unsigned nkept;

/* --- the model ------------------------------------------------------------ */

struct mpool {
	bool live;
	int owner; /* connection */
	struct broker_creds cr;
	uint64_t cap, region;
	uint32_t slots, policy;
	uint32_t n_uids, n_gids, uids[BMSG_ALLOW_MAX], gids[BMSG_ALLOW_MAX];
	uint64_t serial;
	struct sv2shm_ctl *ctl; /* the harness's writable view of the block the broker maps */
	unsigned npending;
	uint64_t reclaimed; /* holds the broker released for dead consumers (STATUS adds them) */
};

struct mpend {
	bool used;
	uint64_t token;
	int pool, sub;
	uint32_t seq;
	uint64_t deadline;
	struct broker_creds cr;
	int peer; /* a dup of the end sent in INTRODUCE, -1 */
};

struct mcons {
	bool used;
	int pool;
	int32_t id;
	uint32_t holder;
	int32_t pid;
	uint32_t uid, gid;
	int client;
	int watch;
	struct sv2shm_ring *ring; /* the harness's view */
	uint32_t snap[64];
	bool died; /* its process exit was delivered in this call */
};

struct mstream {
	bool active;
	uint32_t seq;
	uint64_t after;
	uint32_t pools;
	unsigned n, i; /* messages in the unit (stream_evs[conn]), the next one */
	bool ended;
};

/* One message the broker sends. */
struct ev {
	int conn;
	uint16_t op;
	bool bad_any; /* RESULT to a malformed message: any of its errors */
	bool fd;
	int rc; /* what the env answers */
	uint32_t seq;
	int32_t result, id;
	uint32_t holder;
	int name;
	uint64_t token;
	int32_t pid;
	uint32_t uid, gid;
	uint64_t capacity;
	uint32_t slots, policy, mode, consumers, held, pools, clients;
	uint64_t uptime, refused, counters;
	char slot_map[72];
	int peer; /* SUBSCRIBED 0: the INTRODUCE end's dup, to check the pair */
	bool done;
};

static struct mpool mpools[NNAMES];
static struct mpend mpend[NPEND];
static unsigned npend_hi;
static struct mcons mcons[NCONS];
static unsigned ncons_hi;
static struct mstream mstreams[NCONN_I];
static struct ev stream_evs[NCONN_I][1 + BROKER_MAX_CONSUMERS];

static struct {
	uint64_t next_token, next_serial, refused, start_ms;
	unsigned nclients, npools, npending, ncons;
	int order[NNAMES]; /* live pools in registration order */
	unsigned norder;
	int dead[NCONN]; /* given up on, to clean up (a stack, as the broker's) */
	unsigned ndead;
	int inj_watch; /* the next watch fails with this */
} M;

/* What the current call must do. */
static struct ev evs[NEV];
static unsigned nev;
static unsigned cursor[NCONN];
struct wexp {
	int kind, ref;
	int32_t pid;
	int same_conn;
	int result;
	int proc;
	unsigned inc;
};
static struct wexp wexps[8];
static unsigned nwexp, wexp_i;
static int wantw_expected[NCONN_I];
static int close_peers[NPEND];
static unsigned nclose_peers;

/* The environment. */
static struct broker *B;
static uint64_t clock_ms;
static uint64_t env_deadline;
static unsigned timeout_ms;
static int env_inj_watch;
static uint64_t tokens[NTOKENS]; /* the latest tokens INTRODUCE carried */
static unsigned ntokens;
static uint64_t last_token;
static bool any_token;

/* --- the model: helpers --------------------------------------------------- */

static struct ev *m_ev(int conn, unsigned op)
{
	CHECK(nev < NEV, "too many messages in one call");
	struct ev *e = &evs[nev++];
	memset(e, 0, sizeof(*e));
	touch(conn);
	e->conn = conn;
	e->op = (uint16_t)op;
	e->name = -1;
	e->peer = -1;
	return e;
}

static void m_fail(int ci)
{
	struct conn *k = &conns[ci];
	if (k->m_dead)
		return;
	touch(ci);
	k->m_dead = true;
	M.dead[M.ndead++] = ci;
}

/* send_msg(): nothing to a client given up on; a failed send gives up on it. */
static int m_send(struct ev *proto)
{
	struct conn *k = &conns[proto->conn];
	if (!k->m_open || k->m_dead)
		return -EPIPE;
	struct ev *e = m_ev(proto->conn, proto->op);
	*e = *proto;
	e->rc = k->fail;
	if (k->fail)
		m_fail(proto->conn);
	return e->rc;
}

static void m_result(int ci, uint32_t seq, int32_t result)
{
	struct ev e;
	memset(&e, 0, sizeof(e));
	e.conn = ci;
	e.op = BOP_RESULT;
	e.seq = seq;
	e.result = result;
	e.name = -1;
	e.peer = -1;
	m_send(&e);
}

static void m_bad(int ci, uint32_t seq)
{
	struct conn *k = &conns[ci];
	k->m_bad++;
	M.refused++;
	struct ev e;
	memset(&e, 0, sizeof(e));
	e.conn = ci;
	e.op = BOP_RESULT;
	e.seq = seq;
	e.bad_any = true;
	e.name = -1;
	e.peer = -1;
	m_send(&e);
	if (k->m_bad >= BROKER_MAX_BAD)
		m_fail(ci);
}

static void m_subscribed(int ci, uint32_t seq, int32_t result, int32_t id, uint32_t holder, int peer)
{
	struct ev e;
	memset(&e, 0, sizeof(e));
	e.conn = ci;
	e.op = BOP_SUBSCRIBED;
	e.seq = seq;
	e.result = result;
	e.id = id;
	e.holder = holder;
	e.fd = result == 0;
	e.name = -1;
	e.peer = peer;
	m_send(&e);
}

static bool m_allowed(const struct mpool *p, const struct broker_creds *cr)
{
	if (cr->uid == p->cr.uid)
		return true;
	for (uint32_t i = 0; i < p->n_uids; i++)
		if (p->uids[i] == cr->uid)
			return true;
	for (uint32_t i = 0; i < p->n_gids; i++)
		if (p->gids[i] == cr->gid)
			return true;
	return false;
}

static bool m_visible(const struct mpool *p, const struct broker_creds *cr)
{
	return cr->uid == 0 || m_allowed(p, cr);
}

static uint64_t m_min_deadline(void)
{
	for (unsigned i = 0; i < npend_hi; i++)
		if (mpend[i].used)
			return mpend[i].deadline;
	return 0;
}

static void m_pend_drop(struct mpend *q)
{
	q->used = false;
	mpools[q->pool].npending--;
	conns[q->sub].m_npending--;
	M.npending--;
	if (q->peer >= 0) {
		/* The real call may still use it (the check of a SUBSCRIBED's
		 * pair): closed at the end of the call. */
		close_peers[nclose_peers++] = q->peer;
		q->peer = -1;
	}
}

static struct mpend *m_pend_find(uint64_t token)
{
	for (unsigned i = 0; i < npend_hi; i++)
		if (mpend[i].used && mpend[i].token == token)
			return &mpend[i];
	return NULL;
}

/* A consumer record goes: the broker releases its process watch. */
static void m_cons_free(struct mcons *k)
{
	if (k->used)
		M.ncons--;
	k->used = false;
}

/* Consumers of pool p, newest first (the broker's list order). */
static unsigned m_consumers(int p, int out[NCONS])
{
	unsigned n = 0;
	for (unsigned i = ncons_hi; i-- > 0;)
		if (mcons[i].used && mcons[i].pool == p)
			out[n++] = (int)i;
	return n;
}

static void m_pool_remove(int p)
{
	struct mpool *P = &mpools[p];
	for (unsigned i = 0; i < npend_hi; i++) {
		struct mpend *q = &mpend[i];
		if (q->used && q->pool == p) {
			m_subscribed(q->sub, q->seq, -ENOENT, 0, 0, -1);
			m_pend_drop(q);
		}
	}
	static int ks[NCONS];
	unsigned n = m_consumers(p, ks);
	for (unsigned i = 0; i < n; i++) {
		struct mcons *k = &mcons[ks[i]];
		if (k->client >= 0 && !conns[k->client].m_dead) {
			struct ev e;
			memset(&e, 0, sizeof(e));
			e.conn = k->client;
			e.op = BOP_POOL_GONE;
			e.name = p;
			e.peer = -1;
			m_send(&e);
		}
		m_cons_free(k);
	}
	P->live = false;
	M.npools--;
	unsigned j = 0;
	for (unsigned i = 0; i < M.norder; i++)
		if (M.order[i] != p)
			M.order[j++] = M.order[i];
	M.norder = j;
}

/* Pools in registration order. */
static unsigned m_pools_by_serial(int out[NNAMES])
{
	memcpy(out, M.order, M.norder * sizeof(out[0]));
	return M.norder;
}

static void m_cleanup(int ci)
{
	struct conn *k = &conns[ci];
	touch(ci);
	static int ps[NNAMES];
	unsigned n = m_pools_by_serial(ps);
	for (unsigned i = 0; i < n; i++)
		if (mpools[ps[i]].live && mpools[ps[i]].owner == ci)
			m_pool_remove(ps[i]);
	for (unsigned i = 0; i < npend_hi; i++)
		if (mpend[i].used && mpend[i].sub == ci)
			m_pend_drop(&mpend[i]);
	for (unsigned i = 0; i < ncons_hi; i++)
		if (mcons[i].used && mcons[i].client == ci)
			mcons[i].client = -1;
	if (ci < NCONN_I)
		mstreams[ci].active = false;
	k->m_paused = false;
	k->m_open = false;
	M.nclients--;
}

static void m_reap(void)
{
	while (M.ndead) {
		int ci = M.dead[--M.ndead];
		m_cleanup(ci);
	}
}

/* env->watch_process(), decided the same way for the model and the env. */
static int m_watch(int kind, int ref, int32_t pid, int same_conn)
{
	CHECK(nwexp < 8, "watches in one call");
	struct wexp *w = &wexps[nwexp++];
	w->kind = kind;
	w->ref = ref;
	w->pid = pid;
	w->same_conn = same_conn;
	if (M.inj_watch) {
		w->result = M.inj_watch;
		M.inj_watch = 0;
	} else if (same_conn >= 0) {
		/* SO_PEERPIDFD: that connection's process, even if it exited. */
		w->proc = conns[same_conn].proc;
		w->inc = conns[same_conn].inc;
		w->result = 0;
	} else {
		int p = proc_by_pid(pid);
		if (p < 0) {
			w->result = -ESRCH;
		} else {
			w->proc = p;
			w->inc = procs[p].inc;
			w->result = 0;
		}
	}
	return w->result;
}

static void m_drop_stale(int p, int32_t id, uint32_t holder)
{
	for (unsigned i = 0; i < ncons_hi; i++) {
		struct mcons *k = &mcons[i];
		if (k->used && k->pool == p && (k->holder == holder || k->id == id))
			m_cons_free(k);
	}
}

static struct mcons *m_cons_new(int p, int32_t id, uint32_t holder, struct sv2shm_ring *ring,
				const struct broker_creds *cr, int same_conn, int *err)
{
	CHECK(ncons_hi < NCONS, "consumer records");
	int ref = (int)ncons_hi;
	int r = m_watch(W_CONSUMER, ref, cr->pid, same_conn);
	if (r < 0) {
		*err = r;
		return NULL;
	}
	m_drop_stale(p, id, holder);
	struct mcons *k = &mcons[ncons_hi++];
	memset(k, 0, sizeof(*k));
	M.ncons++;
	k->used = true;
	k->pool = p;
	k->id = id;
	k->holder = holder;
	k->pid = cr->pid;
	k->uid = cr->uid;
	k->gid = cr->gid;
	k->client = -1;
	k->watch = -1;
	k->ring = ring;
	return k;
}

/* --- the model: STATUS ---------------------------------------------------- */

static char claim_char(uint64_t claim)
{
	static const char cn[] = "123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	return claim == 0 ? '?' : cn[(claim - 1) % (sizeof(cn) - 1)];
}

static uint64_t counters_hash(const struct bmsg_counters *c)
{
	return fz_hash((const uint8_t *)c, sizeof(*c));
}

static void ctl_counters(struct sv2shm_ctl *ctl, struct bmsg_counters *o)
{
	struct sv2shm_ctl_counters *k = &ctl->counters;
	memset(o, 0, sizeof(*o));
	o->published = atomic_load(&k->published);
	o->bytes = atomic_load(&k->bytes);
	o->releases = atomic_load(&k->releases);
	o->reclaimed = atomic_load(&k->reclaimed);
	o->fallbacks = atomic_load(&k->fallbacks);
	o->waits = atomic_load(&k->waits);
	o->wait_ns = atomic_load(&k->wait_ns);
	o->mode_switches = atomic_load(&k->mode_switches);
	o->hw_slots = atomic_load(&k->hw_slots);
	o->hw_bytes = atomic_load(&k->hw_bytes);
	o->live = atomic_load(&k->live);
	o->bytes_in_use = atomic_load(&k->bytes_in_use);
}

static uint32_t held_count(const struct mpool *P, uint32_t holder)
{
	uint32_t n = 0;
	for (uint32_t s = 0; s < P->slots; s++)
		if (SV2SHM_STATE_HOLDERS(atomic_load(&P->ctl->slots[s].state)) & (UINT32_C(1) << holder))
			n++;
	return n;
}

static void m_build_pool(int ci, int p)
{
	struct mstream *ss = &mstreams[ci];
	struct mpool *P = &mpools[p];
	struct ev *e = &stream_evs[ci][0];
	memset(e, 0, sizeof(*e));
	e->conn = ci;
	e->op = BOP_STATUS_POOL;
	e->seq = ss->seq;
	e->name = p;
	e->peer = -1;
	e->pid = P->cr.pid;
	e->uid = P->cr.uid;
	e->capacity = P->cap;
	e->slots = P->slots;
	e->policy = atomic_load(&P->ctl->counters.policy);
	e->mode = atomic_load(&P->ctl->counters.mode);
	for (uint32_t i = 0; i < P->slots; i++) {
		uint64_t st = atomic_load(&P->ctl->slots[i].state);
		e->slot_map[i] = SV2SHM_STATE_HOLDERS(st) ? claim_char(P->ctl->slots[i].claim) : '-';
	}
	struct bmsg_counters c;
	ctl_counters(P->ctl, &c);
	c.reclaimed += P->reclaimed;
	e->counters = counters_hash(&c);
	static int ks[NCONS];
	unsigned nk = m_consumers(p, ks);
	unsigned n = 1;
	for (unsigned i = 0; i < nk && n < 1 + BROKER_MAX_CONSUMERS; i++, n++) {
		const struct mcons *k = &mcons[ks[i]];
		struct ev *x = &stream_evs[ci][n];
		memset(x, 0, sizeof(*x));
		x->conn = ci;
		x->op = BOP_STATUS_CONSUMER;
		x->seq = ss->seq;
		x->name = p;
		x->peer = -1;
		x->id = k->id;
		x->holder = k->holder;
		x->pid = k->pid;
		x->uid = k->uid;
		x->held = held_count(P, k->holder);
	}
	e->consumers = n - 1;
	ss->n = n;
	ss->i = 0;
}

static void m_build_end(int ci)
{
	struct mstream *ss = &mstreams[ci];
	struct ev *e = &stream_evs[ci][0];
	memset(e, 0, sizeof(*e));
	e->conn = ci;
	e->op = BOP_STATUS_END;
	e->seq = ss->seq;
	e->name = -1;
	e->peer = -1;
	e->pools = ss->pools;
	e->clients = M.nclients;
	e->uptime = clock_ms - M.start_ms;
	e->refused = M.refused;
	ss->n = 1;
	ss->i = 0;
	ss->ended = true;
}

/* The broker's stream(): 1 while paused, 0 when done (or given up). */
static int m_stream(int ci)
{
	struct conn *k = &conns[ci];
	struct mstream *ss = &mstreams[ci];
	for (;;) {
		if (k->m_dead)
			return 0;
		if (ss->i == ss->n) {
			if (ss->ended) {
				ss->active = false;
				return 0;
			}
			static int ps[NNAMES];
			unsigned np = m_pools_by_serial(ps);
			int next = -1;
			for (unsigned i = 0; i < np && next < 0; i++)
				if (mpools[ps[i]].serial > ss->after && m_visible(&mpools[ps[i]], &k->cr))
					next = ps[i];
			if (next >= 0) {
				m_build_pool(ci, next);
				ss->after = mpools[next].serial;
				ss->pools++;
			} else {
				m_build_end(ci);
			}
		}
		int r = -EAGAIN;
		if (k->m_room != 0) {
			struct ev *e = m_ev(ci, stream_evs[ci][ss->i].op);
			*e = stream_evs[ci][ss->i];
			e->rc = r = k->fail;
			if (r == 0 && k->m_room > 0)
				k->m_room--;
		}
		if (r == -EAGAIN) {
			wantw_expected[ci]++;
			if (k->wantw_fail) {
				m_fail(ci);
				return 0;
			}
			return 1;
		}
		if (r < 0) {
			m_fail(ci);
			return 0;
		}
		ss->i++;
	}
}

/* --- the model: messages -------------------------------------------------- */

struct sent {
	const uint8_t *msg;
	size_t len;
	const struct fdrec *fr[4];
	unsigned nfds, flags;
};

static bool zeros32(const uint32_t *v, uint32_t from, uint32_t to)
{
	for (uint32_t i = from; i < to; i++)
		if (v[i])
			return false;
	return true;
}

static void m_register(int ci, const struct bmsg_register *m, const struct fdrec *fr, bool *ok)
{
	struct conn *k = &conns[ci];
	uint32_t seq = m->hdr.seq;
	int name = name_id(m->name);
	if (name < 0 || m->slots < 1 || m->slots > 64 || m->capacity > (UINT64_C(1) << 32) || m->policy > 2 ||
	    m->n_uids > BMSG_ALLOW_MAX || m->n_gids > BMSG_ALLOW_MAX || !zeros32(m->uids, m->n_uids, BMSG_ALLOW_MAX) ||
	    !zeros32(m->gids, m->n_gids, BMSG_ALLOW_MAX) || !fr->ctl_ok || fr->cap != m->capacity ||
	    fr->slots != m->slots) {
		m_bad(ci, seq);
		return;
	}
	*ok = true;
	struct mpool *P = &mpools[name];
	if (P->live) {
		struct conn *o = &conns[P->owner];
		bool gone = o->m_dead || !watch_alive(o->watch);
		bool same = P->owner != ci && P->cr.pid == k->cr.pid && P->cr.uid == k->cr.uid &&
			    P->region == fr->region;
		if (!gone && !same) {
			M.refused++;
			m_result(ci, seq, -EEXIST);
			return;
		}
		if (same) {
			P->ctl = fr->map;
			P->owner = ci;
			P->policy = m->policy;
			P->n_uids = m->n_uids;
			P->n_gids = m->n_gids;
			memcpy(P->uids, m->uids, sizeof(P->uids));
			memcpy(P->gids, m->gids, sizeof(P->gids));
			m_result(ci, seq, 0);
			return;
		}
		m_pool_remove(name);
	}
	if (M.npools >= BROKER_MAX_POOLS) {
		M.refused++;
		m_result(ci, seq, -ENOSPC);
		return;
	}
	memset(P, 0, sizeof(*P));
	P->live = true;
	P->owner = ci;
	P->cr = k->cr;
	P->ctl = fr->map;
	P->cap = m->capacity;
	P->slots = m->slots;
	P->policy = m->policy;
	P->region = fr->region;
	P->n_uids = m->n_uids;
	P->n_gids = m->n_gids;
	memcpy(P->uids, m->uids, sizeof(P->uids));
	memcpy(P->gids, m->gids, sizeof(P->gids));
	P->serial = ++M.next_serial;
	M.npools++;
	M.order[M.norder++] = name;
	m_result(ci, seq, 0);
}

static void m_unregister(int ci, const struct bmsg_unregister *m)
{
	int name = name_id(m->name);
	if (name < 0) {
		m_bad(ci, m->hdr.seq);
		return;
	}
	struct mpool *P = &mpools[name];
	if (!P->live) {
		m_result(ci, m->hdr.seq, -ENOENT);
		return;
	}
	if (P->owner != ci) {
		M.refused++;
		m_result(ci, m->hdr.seq, -EPERM);
		return;
	}
	m_pool_remove(name);
	m_result(ci, m->hdr.seq, 0);
}

static void m_subscribe(int ci, const struct bmsg_subscribe *m)
{
	struct conn *k = &conns[ci];
	uint32_t seq = m->hdr.seq;
	int name = name_id(m->name);
	if (name < 0) {
		m_bad(ci, seq);
		return;
	}
	struct mpool *P = &mpools[name];
	if (!P->live) {
		m_subscribed(ci, seq, -ENOENT, 0, 0, -1);
		return;
	}
	if (!m_allowed(P, &k->cr)) {
		M.refused++;
		m_subscribed(ci, seq, -EACCES, 0, 0, -1);
		return;
	}
	if (P->npending >= BROKER_MAX_CONSUMERS) {
		M.refused++;
		m_subscribed(ci, seq, -EMFILE, 0, 0, -1);
		return;
	}
	if (M.npending >= BROKER_MAX_PENDING || k->m_npending >= BROKER_MAX_PENDING_PER_CLIENT) {
		M.refused++;
		m_subscribed(ci, seq, -EAGAIN, 0, 0, -1);
		return;
	}
	uint64_t token = M.next_token++;
	struct ev e;
	memset(&e, 0, sizeof(e));
	e.conn = P->owner;
	e.op = BOP_INTRODUCE;
	e.fd = true;
	e.name = name;
	e.token = token;
	e.pid = k->cr.pid;
	e.uid = k->cr.uid;
	e.gid = k->cr.gid;
	e.peer = -1;
	if (m_send(&e) < 0) {
		m_subscribed(ci, seq, -ENOENT, 0, 0, -1);
		return;
	}
	CHECK(npend_hi < NPEND, "pending records");
	struct mpend *q = &mpend[npend_hi++];
	memset(q, 0, sizeof(*q));
	q->used = true;
	q->token = token;
	q->pool = name;
	q->sub = ci;
	q->seq = seq;
	q->deadline = clock_ms + timeout_ms;
	q->cr = k->cr;
	q->peer = -1;
	P->npending++;
	k->m_npending++;
	M.npending++;
}

static void m_introduced(int ci, const struct bmsg_introduced *m, const struct fdrec *fr)
{
	uint32_t seq = m->hdr.seq;
	struct mpend *q = m_pend_find(m->token);
	if (!q)
		return;
	struct mpool *P = &mpools[q->pool];
	if (P->owner != ci) {
		m_bad(ci, seq);
		return;
	}
	if (m->result < 0 && m->result >= -ERRNO_MAX) {
		m_subscribed(q->sub, q->seq, m->result, 0, 0, -1);
		m_pend_drop(q);
		return;
	}
	if (m->result <= 0 || m->holder < 1 || m->holder > 31 || (uint32_t)m->result % 32u != m->holder ||
	    !fr->ring_ok || fr->ring_region != P->region) {
		m_subscribed(q->sub, q->seq, -EPROTO, 0, 0, -1);
		m_pend_drop(q);
		m_bad(ci, seq);
		return;
	}
	int err = 0;
	struct mcons *k = m_cons_new(q->pool, m->result, m->holder, fr->map, &q->cr, q->sub, &err);
	if (!k) {
		if (err != -ESRCH)
			m_subscribed(q->sub, q->seq, err, 0, 0, -1);
		m_pend_drop(q);
		return;
	}
	k->client = q->sub;
	int peer = q->peer;
	struct ev e;
	memset(&e, 0, sizeof(e));
	e.conn = q->sub;
	e.op = BOP_SUBSCRIBED;
	e.seq = q->seq;
	e.id = m->result;
	e.holder = m->holder;
	e.fd = true;
	e.name = -1;
	e.peer = peer;
	if (m_send(&e) < 0)
		m_cons_free(k);
	m_pend_drop(q);
}

static void m_consumer_gone(int ci, const struct bmsg_consumer_gone *m)
{
	int name = name_id(m->name);
	if (m->id <= 0 || m->reason < 1 || m->reason > 255 || m->held > 64 || m->reserved || name < 0) {
		m_bad(ci, m->hdr.seq);
		return;
	}
	struct mpool *P = &mpools[name];
	if (!P->live || P->owner != ci)
		return;
	struct mcons *found = NULL;
	unsigned n = 0;
	for (unsigned i = 0; i < ncons_hi; i++)
		if (mcons[i].used && mcons[i].pool == name && mcons[i].id == m->id) {
			found = &mcons[i];
			n++;
		}
	if (n == 1)
		m_cons_free(found);
}

static int env_creds(int32_t pid, uint32_t *uid, uint32_t *gid);

static void m_reattach_consumer(int ci, const struct bmsg_reattach_consumer *m, const struct fdrec *fr)
{
	struct conn *k = &conns[ci];
	uint32_t seq = m->hdr.seq;
	int name = name_id(m->name);
	if (name < 0 || m->id <= 0 || m->holder < 1 || m->holder > 31 || (uint32_t)m->id % 32u != m->holder ||
	    m->reserved) {
		m_bad(ci, seq);
		return;
	}
	struct mpool *P = &mpools[name];
	if (fr) {
		if (!P->live || P->owner != ci || m->pid <= 0 || !fr->ring_ok || fr->ring_region != P->region) {
			m_bad(ci, seq);
			return;
		}
		struct broker_creds cr = {.pid = m->pid, .uid = UINT32_MAX, .gid = UINT32_MAX};
		env_creds(m->pid, &cr.uid, &cr.gid);
		int err = 0;
		struct mcons *x = m_cons_new(name, m->id, m->holder, fr->map, &cr, -1, &err);
		m_result(ci, seq, x ? 0 : err);
		return;
	}
	if (!P->live) {
		m_result(ci, seq, -ENOENT);
		return;
	}
	if (!m_allowed(P, &k->cr)) {
		M.refused++;
		m_result(ci, seq, -EACCES);
		return;
	}
	struct mcons *x = NULL;
	for (unsigned i = ncons_hi; i-- > 0 && !x;)
		if (mcons[i].used && mcons[i].pool == name && mcons[i].id == m->id && mcons[i].holder == m->holder)
			x = &mcons[i];
	if (!x) {
		m_result(ci, seq, -ENOENT);
		return;
	}
	if (x->pid != k->cr.pid) {
		M.refused++;
		m_result(ci, seq, -EPERM);
		return;
	}
	x->client = ci;
	x->uid = k->cr.uid;
	x->gid = k->cr.gid;
	m_result(ci, seq, 0);
}

/* How many fds each opcode takes. */
static bool m_fd_count_ok(unsigned op, const uint8_t *msg, unsigned nfds)
{
	switch (op) {
	case BOP_REGISTER:
	case BOP_REATTACH_PRODUCER:
		return nfds == 1;
	case BOP_INTRODUCED: {
		struct bmsg_introduced m;
		memcpy(&m, msg, sizeof(m));
		return nfds == (m.result > 0 ? 1u : 0u);
	}
	case BOP_REATTACH_CONSUMER:
		return nfds <= 1;
	default:
		return nfds == 0;
	}
}

/* One datagram from ci. Returns the expected handle_message() result (0, 1;
 * -EPIPE is decided at the end by m_dead). Sets *malformed for a message
 * that breaks the wire rules whatever the broker's state. */
static int m_message(int ci, const struct sent *s, bool *malformed)
{
	struct bmsg_hdr h;
	memset(&h, 0, sizeof(h));
	if (s->len >= sizeof(h))
		memcpy(&h, s->msg, sizeof(h));
	uint32_t seq = s->len >= sizeof(h) ? h.seq : 0;
	unsigned op = h.opcode;
	size_t want = bmsg_size(op);
	if ((s->flags & (BROKER_MSG_TRUNC | BROKER_MSG_CTRUNC)) || s->len > BMSG_MAX || s->len < sizeof(h) ||
	    h.magic != BMSG_MAGIC || h.version != BMSG_VERSION || want == 0 || op >= BOP_RESULT || s->len != want ||
	    h.length != want || !m_fd_count_ok(op, s->msg, s->nfds)) {
		*malformed = true;
		m_bad(ci, seq);
		return 0;
	}
	union {
		struct bmsg_hdr hdr;
		struct bmsg_register reg;
		struct bmsg_unregister unreg;
		struct bmsg_subscribe sub;
		struct bmsg_introduced intro;
		struct bmsg_consumer_gone gone;
		struct bmsg_reattach_consumer reatt;
		uint8_t bytes[BMSG_MAX];
	} m;
	memset(&m, 0, sizeof(m));
	memcpy(&m, s->msg, s->len);
	unsigned bad0 = conns[ci].m_bad;
	bool ok = false;
	switch (op) {
	case BOP_REGISTER:
	case BOP_REATTACH_PRODUCER:
		m_register(ci, &m.reg, s->fr[0], &ok);
		break;
	case BOP_UNREGISTER:
		m_unregister(ci, &m.unreg);
		break;
	case BOP_SUBSCRIBE:
		m_subscribe(ci, &m.sub);
		break;
	case BOP_STATUS: {
		CHECK(ci < NCONN_I, "STATUS from a bulk connection");
		struct mstream *ss = &mstreams[ci];
		memset(ss, 0, sizeof(*ss));
		ss->active = true;
		ss->seq = seq;
		int r = m_stream(ci);
		conns[ci].m_paused = r == 1;
		*malformed = false;
		return r;
	}
	case BOP_INTRODUCED:
		m_introduced(ci, &m.intro, s->nfds ? s->fr[0] : NULL);
		break;
	case BOP_CONSUMER_GONE:
		m_consumer_gone(ci, &m.gone);
		break;
	case BOP_REATTACH_CONSUMER:
		m_reattach_consumer(ci, &m.reatt, s->nfds ? s->fr[0] : NULL);
		break;
	}
	/* Field errors that do not depend on the state (INTRODUCED and
	 * REATTACH_CONSUMER with a ring depend on it: not counted here). */
	if (conns[ci].m_bad > bad0 && op != BOP_INTRODUCED && !(op == BOP_REATTACH_CONSUMER && s->nfds))
		*malformed = true;
	return 0;
}

/* --- the environment ------------------------------------------------------ */

static bool name_field_ok(const char *name, int expect)
{
	return bmsg_name_ok(name) && (expect < 0 || memcmp(name, names[expect], BMSG_NAME_MAX) == 0);
}

static bool text_ok(const char *t, size_t n)
{
	return memchr(t, 0, n) != NULL;
}

static bool is_seqpacket(int fd)
{
	int type = 0;
	socklen_t l = sizeof(type);
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
	       getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_SEQPACKET;
}

/* Does a byte sent on a reach b? */
static bool paired(int a, int b)
{
	uint8_t x = 0x5a, y = 0;
	if (send(a, &x, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1)
		return false;
	return recv(b, &y, 1, MSG_DONTWAIT) == 1 && y == x;
}

static struct ev *next_expected(int ci)
{
	while (cursor[ci] < nev && (evs[cursor[ci]].conn != ci || evs[cursor[ci]].done))
		cursor[ci]++;
	return cursor[ci] < nev ? &evs[cursor[ci]] : NULL;
}

static const char *opname(unsigned op)
{
	switch (op) {
	case BOP_RESULT:
		return "RESULT";
	case BOP_INTRODUCE:
		return "INTRODUCE";
	case BOP_SUBSCRIBED:
		return "SUBSCRIBED";
	case BOP_POOL_GONE:
		return "POOL_GONE";
	case BOP_STATUS_POOL:
		return "STATUS_POOL";
	case BOP_STATUS_CONSUMER:
		return "STATUS_CONSUMER";
	case BOP_STATUS_END:
		return "STATUS_END";
	default:
		return "?";
	}
}

static bool bad_errno(int32_t r)
{
	return r == -EBADMSG || r == -EPROTO || r == -EINVAL || r == -EPERM || r == -ENOENT || r == -EBADF;
}

static int env_send(void *ctx, void *conn, const void *msg, size_t len, int fd)
{
	(void)ctx;
	int ci = conn_index(conn);
	struct conn *k = &conns[ci];
	touch(ci);
	CHECK(k->open && !k->closed_now, "send to connection %d, which is closed", ci);
	CHECK(len >= sizeof(struct bmsg_hdr) && len <= BMSG_MAX, "send of %zu bytes", len);
	union {
		struct bmsg_hdr hdr;
		struct bmsg_result res;
		struct bmsg_introduce in;
		struct bmsg_subscribed sub;
		struct bmsg_pool_gone gone;
		struct bmsg_status_pool pool;
		struct bmsg_status_consumer cons;
		struct bmsg_status_end end;
		uint8_t b[BMSG_MAX];
	} m;
	memcpy(&m, msg, len);
	unsigned op = m.hdr.opcode;
	CHECK(m.hdr.magic == BMSG_MAGIC && m.hdr.version == BMSG_VERSION, "bad header: magic %x version %u", m.hdr.magic,
	      m.hdr.version);
	CHECK(op >= BOP_RESULT && op <= BOP_STATUS_END, "opcode %u to a client", op);
	CHECK(len == bmsg_size(op) && m.hdr.length == len, "%s: %zu bytes, header says %u", opname(op), len,
	      m.hdr.length);
	bool want_fd = op == BOP_INTRODUCE || (op == BOP_SUBSCRIBED && m.sub.result == 0);
	CHECK(want_fd ? fd >= 0 : fd == -1, "%s (result %d) with fd %d", opname(op),
	      op == BOP_SUBSCRIBED ? m.sub.result : 0, fd);
	if (want_fd)
		CHECK(is_seqpacket(fd), "%s: fd %d is not a SOCK_SEQPACKET socket", opname(op), fd);

	struct ev *e = next_expected(ci);
	CHECK(e, "connection %d: unexpected %s seq %u (nothing more expected)", ci, opname(op), m.hdr.seq);
	CHECK(e->fd == (fd >= 0), "%s with fd %d", opname(op), fd);
	CHECK(e->op == op, "connection %d: %s seq %u (result %d), expected %s seq %u (result %d)", ci, opname(op),
	      m.hdr.seq, op == BOP_RESULT ? m.res.result : op == BOP_SUBSCRIBED ? m.sub.result : 0, opname(e->op),
	      e->seq, e->result);
	e->done = true;
	trace("  -> conn %d: %s seq %u", ci, opname(op), m.hdr.seq);
	switch (op) {
	case BOP_RESULT:
		CHECK(m.hdr.seq == e->seq, "RESULT seq %u, expected %u", m.hdr.seq, e->seq);
		CHECK(m.res.reserved == 0 && text_ok(m.res.text, sizeof(m.res.text)), "RESULT: reserved or text");
		if (e->bad_any)
			CHECK(bad_errno(m.res.result), "RESULT %d to a malformed message (seq %u)", m.res.result,
			      m.hdr.seq);
		else
			CHECK(m.res.result == e->result, "RESULT %d (%s), expected %d, seq %u", m.res.result, m.res.text,
			      e->result, m.hdr.seq);
		break;
	case BOP_INTRODUCE:
		CHECK(m.hdr.seq == 0, "INTRODUCE with seq %u", m.hdr.seq);
		CHECK(name_field_ok(m.in.name, e->name), "INTRODUCE: name %.64s", m.in.name);
		CHECK(m.in.token == e->token, "INTRODUCE token %llu, expected %llu", (unsigned long long)m.in.token,
		      (unsigned long long)e->token);
		CHECK(m.in.pid == e->pid && m.in.uid == e->uid && m.in.gid == e->gid && m.in.reserved == 0,
		      "INTRODUCE: pid %d uid %u gid %u, expected %d %u %u", m.in.pid, m.in.uid, m.in.gid, e->pid, e->uid,
		      e->gid);
		if (e->rc == 0) {
			tokens[ntokens++ % NTOKENS] = m.in.token;
			last_token = m.in.token;
			any_token = true;
			/* Keep the producer's end, to check the pair later. */
			struct mpend *q = m_pend_find(m.in.token);
			CHECK(q, "INTRODUCE token %llu: no pending record", (unsigned long long)m.in.token);
			if (q->peer < 0)
				q->peer = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		}
		break;
	case BOP_SUBSCRIBED:
		CHECK(m.hdr.seq == e->seq, "SUBSCRIBED seq %u, expected %u", m.hdr.seq, e->seq);
		CHECK(m.sub.reserved == 0 && text_ok(m.sub.text, sizeof(m.sub.text)), "SUBSCRIBED: reserved or text");
		CHECK(m.sub.result == e->result, "SUBSCRIBED %d (%s), expected %d, seq %u", m.sub.result, m.sub.text,
		      e->result, m.hdr.seq);
		if (m.sub.result == 0) {
			bool holder_ok = (uint32_t)m.sub.id % 32u == m.sub.holder;
			CHECK(m.sub.id == e->id && m.sub.holder == e->holder && m.sub.id > 0 && holder_ok,
			      "SUBSCRIBED: id %d holder %u, expected %d %u", m.sub.id, m.sub.holder, e->id, e->holder);
			if (e->peer >= 0)
				CHECK(paired(e->peer, fd) && paired(fd, e->peer),
				      "SUBSCRIBED: its fd is not the other end of the INTRODUCE one");
		} else {
			CHECK(m.sub.id == 0 && m.sub.holder == 0, "SUBSCRIBED %d with id %d holder %u", m.sub.result,
			      m.sub.id, m.sub.holder);
		}
		break;
	case BOP_POOL_GONE:
		CHECK(m.hdr.seq == 0, "POOL_GONE with seq %u", m.hdr.seq);
		CHECK(name_field_ok(m.gone.name, e->name), "POOL_GONE %.64s, expected %s", m.gone.name, names[e->name]);
		break;
	case BOP_STATUS_POOL: {
		const struct bmsg_status_pool *p = &m.pool;
		CHECK(p->hdr.seq == e->seq, "STATUS_POOL seq %u, expected %u", p->hdr.seq, e->seq);
		CHECK(name_field_ok(p->name, e->name), "STATUS_POOL %.64s, expected %s", p->name, names[e->name]);
		CHECK(p->pid == e->pid && p->uid == e->uid, "STATUS_POOL %s: pid %d uid %u, expected %d %u",
		      names[e->name], p->pid, p->uid, e->pid, e->uid);
		CHECK(p->capacity == e->capacity && p->slots == e->slots,
		      "STATUS_POOL %s: capacity %llu slots %u, expected %llu %u", names[e->name],
		      (unsigned long long)p->capacity, p->slots, (unsigned long long)e->capacity, e->slots);
		CHECK(p->policy == e->policy && p->mode == e->mode, "STATUS_POOL %s: policy %u mode %u", names[e->name],
		      p->policy, p->mode);
		CHECK(p->consumers == e->consumers && p->consumers <= BROKER_MAX_CONSUMERS,
		      "STATUS_POOL %s: %u consumers, expected %u", names[e->name], p->consumers, e->consumers);
		CHECK(p->slots <= 64 && p->slot_map[p->slots] == 0 && strncmp(p->slot_map, e->slot_map, 72) == 0,
		      "STATUS_POOL %s: slot map %.72s, expected %s", names[e->name], p->slot_map, e->slot_map);
		CHECK(counters_hash(&p->counters) == e->counters, "STATUS_POOL %s: counters", names[e->name]);
		break;
	}
	case BOP_STATUS_CONSUMER: {
		const struct bmsg_status_consumer *c = &m.cons;
		CHECK(c->hdr.seq == e->seq && c->reserved == 0, "STATUS_CONSUMER seq %u", c->hdr.seq);
		CHECK(name_field_ok(c->pool, e->name), "STATUS_CONSUMER of %.64s, expected %s", c->pool,
		      names[e->name]);
		CHECK(c->id == e->id && c->holder == e->holder && c->pid == e->pid && c->uid == e->uid &&
			      c->held == e->held,
		      "STATUS_CONSUMER %s: id %d holder %u pid %d uid %u held %u, expected %d %u %d %u %u",
		      names[e->name], c->id, c->holder, c->pid, c->uid, c->held, e->id, e->holder, e->pid, e->uid,
		      e->held);
		break;
	}
	case BOP_STATUS_END: {
		const struct bmsg_status_end *x = &m.end;
		CHECK(x->hdr.seq == e->seq, "STATUS_END seq %u, expected %u", x->hdr.seq, e->seq);
		CHECK(x->pools == e->pools && x->clients == e->clients,
		      "STATUS_END: %u pools %u clients, expected %u %u", x->pools, x->clients, e->pools, e->clients);
		CHECK(x->uptime_ms == e->uptime && x->refused == e->refused,
		      "STATUS_END: uptime %llu refused %llu, expected %llu %llu", (unsigned long long)x->uptime_ms,
		      (unsigned long long)x->refused, (unsigned long long)e->uptime, (unsigned long long)e->refused);
		CHECK(text_ok(x->version, sizeof(x->version)) && text_ok(x->event_loop, sizeof(x->event_loop)) &&
			      strcmp(x->version, "0.1.0-fuzz") == 0 && strcmp(x->event_loop, "fuzz") == 0,
		      "STATUS_END: version/event_loop");
		break;
	}
	}
	if (e->rc == 0 && op >= BOP_STATUS_POOL && k->room > 0)
		k->room--;
	CHECK(e->rc == k->fail, "env answer");
	return e->rc;
}

static bool env_stream_room(void *ctx, void *conn)
{
	(void)ctx;
	int ci = conn_index(conn);
	CHECK(conns[ci].open && !conns[ci].closed_now, "stream_room on a closed connection");
	return conns[ci].room != 0;
}

static int env_want_writable(void *ctx, void *conn)
{
	(void)ctx;
	int ci = conn_index(conn);
	struct conn *k = &conns[ci];
	CHECK(k->open && !k->closed_now && ci < NCONN_I, "want_writable on connection %d", ci);
	CHECK(wantw_expected[ci] > 0, "connection %d: unexpected want_writable", ci);
	wantw_expected[ci]--;
	if (k->wantw_fail)
		return -EBADF;
	k->want_w = true;
	return 0;
}

static void env_resume(void *ctx, void *conn)
{
	(void)ctx;
	int ci = conn_index(conn);
	CHECK(conns[ci].open && !conns[ci].closed_now, "resume on a closed connection");
	conns[ci].resumed = true;
}

static void env_close(void *ctx, void *conn)
{
	(void)ctx;
	int ci = conn_index(conn);
	struct conn *k = &conns[ci];
	CHECK(k->open && !k->closed_now, "close of connection %d twice", ci);
	CHECK(!k->m_open, "connection %d closed, the model keeps it", ci);
	touch(ci);
	k->closed_now = true;
	trace("  -> conn %d closed", ci);
}

static int env_watch(void *ctx, int32_t pid, void *same_conn, void *cookie, void **handle)
{
	(void)ctx;
	CHECK(wexp_i < nwexp, "unexpected watch_process(pid %d)", pid);
	struct wexp *w = &wexps[wexp_i++];
	int same = same_conn ? conn_index(same_conn) : -1;
	CHECK(w->pid == pid && w->same_conn == same, "watch_process(pid %d, conn %d), expected (%d, %d)", pid, same,
	      w->pid, w->same_conn);
	if (w->result < 0)
		return w->result;
	unsigned i = nwfree ? wfree[--nwfree] : nwatch_hi++;
	CHECK(i < NWATCH, "process watches");
	nwatch_used++;
	if (w->kind == W_CONSUMER)
		cons_watches[mcons[w->ref].pool]++; /* the limit: at the end of the call */
	struct watch *x = &watches[i];
	memset(x, 0, sizeof(*x));
	x->used = true;
	x->proc = w->proc;
	x->inc = w->inc;
	x->cookie = cookie;
	x->kind = w->kind;
	x->ref = w->ref;
	if (w->kind == W_CLIENT)
		conns[w->ref].watch = (int)i;
	else
		mcons[w->ref].watch = (int)i;
	*handle = x;
	return 0;
}

static int watch_index(void *handle)
{
	struct watch *x = handle;
	CHECK(x >= watches && x < watches + NWATCH && x->used, "unknown process watch %p", handle);
	return (int)(x - watches);
}

static void env_unwatch(void *ctx, void *handle)
{
	(void)ctx;
	int w = watch_index(handle);
	struct watch *x = &watches[w];
	if (x->kind == W_CLIENT)
		CHECK(!conns[x->ref].m_open, "connection %d's watch released, the model keeps it", x->ref);
	else
		CHECK(!mcons[x->ref].used, "consumer record (id %d) watch released, the model keeps it",
		      mcons[x->ref].id);
	if (x->kind == W_CONSUMER)
		cons_watches[mcons[x->ref].pool]--;
	x->used = false;
	nwatch_used--;
	wfree[nwfree++] = (unsigned)w;
}

static bool env_alive(void *ctx, void *handle)
{
	(void)ctx;
	return watch_alive(watch_index(handle));
}

static int env_creds(int32_t pid, uint32_t *uid, uint32_t *gid)
{
	int p = proc_by_pid(pid);
	if (p < 0)
		return -ESRCH;
	*uid = procs[p].uid;
	*gid = procs[p].gid;
	return 0;
}

static int env_process_creds(void *ctx, int32_t pid, uint32_t *uid, uint32_t *gid)
{
	(void)ctx;
	return env_creds(pid, uid, gid);
}

static void env_set_deadline(void *ctx, uint64_t ms)
{
	(void)ctx;
	env_deadline = ms;
}

static uint64_t env_now(void *ctx)
{
	(void)ctx;
	return clock_ms;
}

static const struct broker_env ENV = {
	.send = env_send,
	.stream_room = env_stream_room,
	.want_writable = env_want_writable,
	.resume = env_resume,
	.close = env_close,
	.watch_process = env_watch,
	.unwatch_process = env_unwatch,
	.process_alive = env_alive,
	.process_creds = env_process_creds,
	.set_deadline = env_set_deadline,
	.now_ms = env_now,
};

/* --- around every call ---------------------------------------------------- */

static void call_begin(void)
{
	nev = 0;
	nwexp = wexp_i = 0;
	nclose_peers = 0;
	memset(wantw_expected, 0, sizeof(wantw_expected));
	/* Other connections were reset by the call_end() that touched them. */
	for (unsigned i = 0; i < NCONN_I; i++) {
		cursor[i] = 0;
		conns[i].closed_now = false;
		conns[i].m_room = conns[i].room;
	}
	M.inj_watch = env_inj_watch;
	for (unsigned i = 0; i < ncons_hi; i++) {
		mcons[i].died = false;
		if (mcons[i].used && mcons[i].ring)
			memcpy(mcons[i].snap, (const void *)mcons[i].ring->released, sizeof(mcons[i].snap));
	}
	quiet_begin();
}

/* Expected ring contents after consumer k's process exited. */
static void expect_reclaim(struct mcons *k)
{
	const struct mpool *P = &mpools[k->pool];
	if (!k->ring)
		return;
	for (uint32_t s = 0; s < P->slots; s++) {
		uint64_t st = atomic_load(&P->ctl->slots[s].state);
		if (SV2SHM_STATE_HOLDERS(st) & (UINT32_C(1) << k->holder)) {
			k->snap[s] = SV2SHM_STATE_GEN(st);
			mpools[k->pool].reclaimed++;
		}
	}
	k->died = true;
}

static void call_end(const char *what)
{
	quiet_end();
	for (unsigned i = 0; i < nev; i++)
		CHECK(evs[i].done, "%s: connection %d was not sent %s seq %u (result %d)", what, evs[i].conn,
		      opname(evs[i].op), evs[i].seq, evs[i].result);
	CHECK(wexp_i == nwexp, "%s: %u process watches asked for, expected %u", what, wexp_i, nwexp);
	env_inj_watch = M.inj_watch;
	for (unsigned d = 0; d < NCONN_I + ndirty; d++) {
		unsigned i = d < NCONN_I ? d : (unsigned)dirty[d - NCONN_I];
		struct conn *k = &conns[i];
		cursor[i] = 0;
		if (i < NCONN_I)
			CHECK(wantw_expected[i] == 0, "%s: connection %u: want_writable not asked", what, i);
		CHECK(k->room == k->m_room, "%s: connection %u: room", what, i);
		if (k->closed_now) {
			k->open = false;
			k->c = NULL;
			k->want_w = false;
			k->closed_now = false;
		}
		CHECK(k->open == k->m_open, "%s: connection %u is %s, the model says %s", what, i,
		      k->open ? "open" : "closed", k->m_open ? "open" : "closed");
		if (k->open) {
			CHECK(!k->m_dead, "%s: connection %u given up on but not closed", what, i);
			CHECK(k->m_bad < BROKER_MAX_BAD && k->strikes < BROKER_MAX_BAD,
			      "%s: connection %u sent %u malformed messages and is still open", what, i, k->strikes);
			CHECK(broker_client_paused(k->c) == k->m_paused, "%s: connection %u paused %d, expected %d", what,
			      i, broker_client_paused(k->c), k->m_paused);
			if (k->m_paused)
				CHECK(k->want_w, "%s: connection %u paused with no writability asked", what, i);
		}
	}
	for (unsigned d = 0; d < ndirty; d++)
		is_dirty[dirty[d]] = false;
	ndirty = 0;
	for (unsigned i = 0; i < nclose_peers; i++)
		close(close_peers[i]);
	nclose_peers = 0;
	/* Watches: exactly one per live client and consumer record (each
	 * release was checked against the model as it happened; at most 31
	 * consumer records per pool, checked as each was made). */
	CHECK(nwatch_used == M.nclients + M.ncons, "%s: %u process watches, expected %u clients + %u consumers",
	      what, nwatch_used, M.nclients, M.ncons);
	for (unsigned i = 0; i < nwexp; i++)
		if (wexps[i].kind == W_CONSUMER && wexps[i].result == 0) {
			int p = mcons[wexps[i].ref].pool;
			CHECK(cons_watches[p] <= BROKER_MAX_CONSUMERS, "%s: pool %s has %u consumer records", what,
			      names[p], cons_watches[p]);
		}
	/* Rings: only a dead consumer's, only as the control block said. */
	for (unsigned i = 0; i < ncons_hi; i++) {
		struct mcons *k = &mcons[i];
		if (!k->ring || !(k->used || k->died))
			continue;
		for (unsigned s = 0; s < 64; s++) {
			uint32_t v = atomic_load(&k->ring->released[s]);
			CHECK(v == k->snap[s], "%s: consumer id %d (holder %u) ring released[%u] = %u, expected %u", what,
			      k->id, k->holder, s, v, k->snap[s]);
		}
		if (k->died)
			k->ring = NULL;
	}
	/* Limits and counts. */
	CHECK(broker_pools(B) == M.npools && M.npools <= BROKER_MAX_POOLS, "%s: %u pools, expected %u", what,
	      broker_pools(B), M.npools);
	CHECK(broker_clients(B) == M.nclients && M.nclients <= BROKER_MAX_CLIENTS, "%s: %u clients, expected %u", what,
	      broker_clients(B), M.nclients);
	CHECK(M.npending <= BROKER_MAX_PENDING, "%s: pending", what);
	CHECK(broker_refused(B) == M.refused, "%s: refused %llu, expected %llu", what,
	      (unsigned long long)broker_refused(B), (unsigned long long)M.refused);
	uint64_t d = m_min_deadline();
	if (d)
		CHECK(env_deadline != 0 && env_deadline <= d, "%s: deadline %llu, a subscription expires at %llu", what,
		      (unsigned long long)env_deadline, (unsigned long long)d);
}

/* Fds handed to the broker: closed (or kept: at most one per record). */
static void check_handed(const int *fds, const struct stat *st, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct stat now;
		if (fstat(fds[i], &now) != 0) {
			CHECK(errno == EBADF, "fstat");
			continue;
		}
		if (now.st_dev != st[i].st_dev || now.st_ino != st[i].st_ino)
			continue; /* the number names something else now */
		CHECK(nkept < NFDREC, "kept fds");
		kept_fds[nkept++] = (struct kept){.fd = fds[i], .dev = st[i].st_dev, .ino = st[i].st_ino};
	}
	/* Still open? Forget those closed since. */
	unsigned j = 0;
	for (unsigned i = 0; i < nkept; i++) {
		struct stat now;
		if (fstat(kept_fds[i].fd, &now) == 0 && now.st_dev == kept_fds[i].dev && now.st_ino == kept_fds[i].ino)
			kept_fds[j++] = kept_fds[i];
	}
	nkept = j;
	unsigned records = M.npools;
	for (unsigned i = 0; i < ncons_hi; i++)
		records += mcons[i].used;
	CHECK(nkept <= records, "the broker keeps %u of the fds it was given, for %u records", nkept, records);
}

/* --- fds ------------------------------------------------------------------ */

static int memfd_plain(const char *name, bool sealable)
{
	int fd = memfd_create(name, MFD_CLOEXEC | (sealable ? MFD_ALLOW_SEALING : 0u));
	CHECK(fd >= 0, "memfd_create: %s", strerror(errno));
	return fd;
}

static void *map_rw(int fd, size_t len)
{
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	return m;
}

static struct fdrec *new_rec(int kind)
{
	CHECK(nfdrec < NFDREC, "fd records");
	struct fdrec *r = &fdrecs[nfdrec++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	return r;
}

/* Room for the fds of one more message? */
static bool fd_room(void)
{
	return nfdrec + 4 <= NFDREC;
}

/* A control block as region_create() makes it: the producer maps it, writes
 * the identity, then seals (FUTURE_WRITE after its own writable mapping). */
static int make_ctl(uint64_t cap, uint32_t slots, uint64_t region, unsigned variant, uint8_t sub, struct fdrec **out)
{
	struct fdrec *r = new_rec(FK_CTL);
	bool sealable = variant != 4;
	int fd = memfd_plain("fz-ctl", sealable);
	size_t size = sizeof(struct sv2shm_ctl);
	if (variant == 3) {
		static const long delta[4] = {-1, 1, -(long)sizeof(struct sv2shm_ctl), 4096};
		size = (size_t)((long)size + delta[sub & 3]);
	}
	CHECK(ftruncate(fd, (off_t)size) == 0, "ftruncate");
	/* A short file is left empty (what lies past its end would SIGBUS). */
	struct sv2shm_ctl *ctl = NULL;
	if (size >= sizeof(*ctl)) {
		r->map_len = size;
		ctl = map_rw(fd, size);
		pool_ctl_init(ctl, cap, slots, region);
	}
	bool content_ok = ctl != NULL;
	if (variant == 1 && ctl) {
		switch (sub & 7) {
		case 0:
			ctl->magic ^= 1u;
			break;
		case 1:
			ctl->version++;
			break;
		case 2:
			ctl->ctl_size--;
			break;
		case 3:
			ctl->capacity++;
			break;
		case 4:
			ctl->nslots = ctl->nslots == 64 ? 1 : ctl->nslots + 1;
			break;
		case 5:
			ctl->capacity = UINT64_MAX;
			break;
		default:
			ctl->magic = 0;
			break;
		}
		content_ok = (sub & 7) >= 3 && (sub & 7) <= 5; /* geometry: ok but not this one */
	}
	unsigned seals = CTL_SEALS_ALL;
	if (variant == 2)
		seals = (sub & 1 ? F_SEAL_SHRINK : 0u) | (sub & 2 ? F_SEAL_GROW : 0u) | (sub & 4 ? F_SEAL_FUTURE_WRITE : 0u) |
			(sub & 8 ? F_SEAL_SEAL : 0u);
	if (sealable && seals)
		CHECK(fcntl(fd, F_ADD_SEALS, seals) == 0, "F_ADD_SEALS: %s", strerror(errno));
	r->map = ctl;
	r->cap = ctl ? ctl->capacity : 0;
	r->slots = ctl ? ctl->nslots : 0;
	r->region = region;
	r->ctl_ok = content_ok && variant != 2 && variant != 3 && variant != 4;
	if (variant == 2)
		r->ctl_ok = content_ok && seals == CTL_SEALS_ALL;
	if (variant == 1 && content_ok)
		r->ctl_ok = true; /* a valid block, of another geometry than the message says */
	*out = r;
	return fd;
}

static const uint32_t ring_sizes[8] = {1, 2, 4, 16, 64, 256, 1024, 65536};

/* A ring as the producer makes it (SHRINK|GROW, header, SEAL). */
static int make_ring(uint64_t region, unsigned variant, uint8_t sub, struct fdrec **out)
{
	struct fdrec *r = new_rec(FK_RING);
	uint32_t n = ring_sizes[sub & 7];
	size_t size = ring_bytes(n);
	int fd = memfd_plain("fz-ring", true);
	if (variant == 3) {
		static const size_t sizes[4] = {RING_HDR - 1, 0, 64, 0};
		size = sizes[(sub >> 3) & 3];
		if (((sub >> 3) & 3) == 1)
			size = ring_bytes(SV2SHM_RING_MAX_ENTRIES) + 64;
		if (((sub >> 3) & 3) == 3)
			size = ring_bytes(n) - 1; /* smaller than its entries say */
	}
	CHECK(ftruncate(fd, (off_t)size) == 0, "ftruncate");
	struct sv2shm_ring *ring = NULL;
	bool ok = size >= RING_HDR && size <= ring_bytes(SV2SHM_RING_MAX_ENTRIES);
	if (size >= RING_HDR) {
		ring = map_rw(fd, RING_HDR);
		ring->magic = SV2SHM_RING_MAGIC;
		ring->version = SV2SHM_RING_VERSION;
		ring->nentries = n;
		ring->entry_size = SV2SHM_RING_ENTRY_SIZE;
		ring->region_id = region;
		if (ring_bytes(n) > size)
			ok = false;
	}
	if (variant == 1 && ring) {
		switch ((sub >> 3) & 7) {
		case 0:
			ring->magic++;
			break;
		case 1:
			ring->version = 1;
			break;
		case 2:
			ring->nentries = 0;
			break;
		case 3:
			ring->nentries = 3;
			break;
		case 4:
			ring->nentries = SV2SHM_RING_MAX_ENTRIES * 2;
			break;
		default:
			ring->region_id ^= 0x10000; /* another pool's */
			break;
		}
		if (((sub >> 3) & 7) < 5)
			ok = false;
	}
	unsigned seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	if (variant == 2) {
		static const unsigned sv[4] = {F_SEAL_GROW | F_SEAL_SEAL, 0, F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE,
					       F_SEAL_SHRINK};
		seals = sv[(sub >> 3) & 3];
		if (!(seals & F_SEAL_SHRINK) || (seals & F_SEAL_FUTURE_WRITE))
			ok = false;
	}
	if (seals)
		CHECK(fcntl(fd, F_ADD_SEALS, seals) == 0, "F_ADD_SEALS: %s", strerror(errno));
	r->map = ring;
	r->map_len = RING_HDR;
	r->ring_ok = ok && ring;
	r->ring_region = ring ? ring->region_id : 0;
	*out = r;
	return fd;
}

/* Reopen through /proc, read-only (a valid control block stays valid: the
 * broker maps it read-only; a ring does not: it writes released[]) or
 * write-only (neither can be mapped). */
static int reopen(int fd, int mode)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int r = open(path, mode | O_CLOEXEC);
	CHECK(r >= 0, "reopen: %s", strerror(errno));
	close(fd);
	return r;
}

/* A regular file of the right size that is no memfd: on a disk filesystem
 * if there is one (F_GET_SEALS fails), else on tmpfs (seals: only SEAL). */
static int plain_file(size_t size)
{
	static const char *const dirs[3] = {"/var/tmp", ".", "/tmp"};
	for (int i = 0; i < 3; i++) {
		int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0)
			continue;
		CHECK(ftruncate(fd, (off_t)size) == 0, "ftruncate");
		return fd;
	}
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0, "/dev/null");
	return fd;
}

/* One fd from a spec byte: kind in the low 4 bits, a variant in the high 4.
 * role: FK_CTL or FK_RING, what the message wants. */
static int make_fd(uint8_t spec, int role, uint64_t cap, uint32_t slots, uint64_t region, struct fdrec **out)
{
	unsigned kind = spec & 15u;
	uint8_t sub = (uint8_t)(spec >> 4);
	struct fdrec *r;
	int fd, sv[2];
	switch (kind) {
	case 0:
	case 1:
	case 2:
	case 3:
	case 4:
	case 5:
		return role == FK_CTL ? make_ctl(cap, slots, region, 0, sub, out)
				      : make_ring(region, 0, (uint8_t)(sub | ((unsigned)kind << 4)), out);
	case 6: /* the other kind */
		if (role == FK_CTL) {
			fd = make_ring(region, 0, sub, &r);
			r->ring_ok = false;
		} else {
			fd = make_ctl(cap, slots, region, 0, sub, &r);
			r->ctl_ok = false;
		}
		*out = r;
		return fd;
	case 7: /* corrupt content */
		return role == FK_CTL ? make_ctl(cap, slots, region, 1, sub, out)
				      : make_ring(region, 1, (uint8_t)(sub << 3 | (sub & 7)), out);
	case 8: /* seals */
		return role == FK_CTL ? make_ctl(cap, slots, region, 2, sub, out)
				      : make_ring(region, 2, (uint8_t)(sub << 3), out);
	case 9: /* size */
		return role == FK_CTL ? make_ctl(cap, slots, region, 3, sub, out)
				      : make_ring(region, 3, (uint8_t)(sub << 3 | (sub & 7)), out);
	case 10: /* a memfd that cannot be sealed (control block) / not sealed at all */
		if (role == FK_CTL)
			return make_ctl(cap, slots, region, 4, sub, out);
		fd = make_ring(region, 2, (uint8_t)(1u << 3), out);
		return fd;
	case 11: /* reopened read-only, or write-only */
		if (role == FK_CTL) {
			fd = make_ctl(cap, slots, region, 0, sub, out);
			if (sub & 1)
				(*out)->ctl_ok = false;
		} else {
			fd = make_ring(region, 0, sub, out);
			(*out)->ring_ok = false;
		}
		return reopen(fd, sub & 1 ? O_WRONLY : O_RDONLY);
	case 12: /* a pipe */
		CHECK(pipe2(sv, O_CLOEXEC) == 0, "pipe");
		close(sv[1]);
		*out = new_rec(FK_OTHER);
		return sv[0];
	case 13: /* /dev/null */
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		CHECK(fd >= 0, "/dev/null");
		*out = new_rec(FK_OTHER);
		return fd;
	case 14: /* a socket */
		CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
		close(sv[1]);
		*out = new_rec(FK_OTHER);
		return sv[0];
	default: /* a directory, or a regular file of the right size */
		*out = new_rec(FK_OTHER);
		if (sub & 1)
			return plain_file(role == FK_CTL ? sizeof(struct sv2shm_ctl) : ring_bytes(16));
		fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		CHECK(fd >= 0, "open /");
		return fd;
	}
}

/* --- calls into the broker ------------------------------------------------ */

static const char *conn_desc(int ci)
{
	static char buf[64];
	const struct conn *k = &conns[ci];
	snprintf(buf, sizeof(buf), "conn %d (pid %d uid %u gid %u)", ci, (int)k->cr.pid, (unsigned)k->cr.uid,
		 (unsigned)k->cr.gid);
	return buf;
}

/* Hand one datagram to the broker and check everything. */
static void deliver(int ci, const uint8_t *msg, size_t len, const int *fds, const struct fdrec *const *fr,
		    unsigned nfds, unsigned flags)
{
	struct conn *k = &conns[ci];
	CHECK(k->open && !k->m_paused, "deliver on a closed or paused connection");
	struct stat st[4];
	for (unsigned i = 0; i < nfds; i++)
		CHECK(fstat(fds[i], &st[i]) == 0, "fstat");
	touch(ci);
	struct sent s = {.msg = msg, .len = len, .nfds = nfds, .flags = flags};
	for (unsigned i = 0; i < nfds; i++)
		s.fr[i] = fr[i];
	if (verbose) {
		struct bmsg_hdr h;
		memset(&h, 0, sizeof(h));
		memcpy(&h, msg, len < sizeof(h) ? len : sizeof(h));
		trace("%s sends %zu bytes: opcode %u seq %u, %u fds, flags %u", conn_desc(ci), len, h.opcode, h.seq,
		      nfds, flags);
	}
	call_begin();
	bool malformed = false;
	int want = m_message(ci, &s, &malformed);
	m_reap();
	if (malformed)
		k->strikes++;
	int r = broker_handle_message(B, k->c, msg, len, fds, nfds, flags);
	call_end("handle_message");
	if (!k->m_open)
		CHECK(r == -EPIPE, "handle_message: %d for a client it closed", r);
	else
		CHECK(r == want, "handle_message: %d, expected %d", r, want);
	check_handed(fds, st, nfds);
}

static void do_connect(int ci, int p)
{
	struct conn *k = &conns[ci];
	if (k->open || !procs[p].alive)
		return;
	if ((unsigned)ci >= nconn_hi)
		nconn_hi = (unsigned)ci + 1;
	memset(k, 0, sizeof(*k));
	k->proc = p;
	k->inc = procs[p].inc;
	k->cr = (struct broker_creds){.pid = procs[p].pid, .uid = procs[p].uid, .gid = procs[p].gid};
	k->room = k->m_room = -1;
	k->watch = -1;
	touch(ci);
	trace("connect %s", conn_desc(ci));
	call_begin();
	bool ok;
	if (M.nclients >= BROKER_MAX_CLIENTS) {
		M.refused++;
		ok = false;
	} else {
		ok = m_watch(W_CLIENT, ci, k->cr.pid, ci) == 0;
	}
	if (ok) {
		k->m_open = true;
		M.nclients++;
	}
	k->open = true; /* for the env's checks during the call */
	k->c = broker_client_new(B, &k->cr, k);
	if (!k->c)
		k->open = false;
	call_end("client_new");
	CHECK((k->c != NULL) == ok, "client_new: %s, expected %s", k->c ? "accepted" : "refused",
	      ok ? "accepted" : "refused");
}

static void do_hangup(int ci)
{
	struct conn *k = &conns[ci];
	if (!k->open)
		return;
	trace("%s hangs up", conn_desc(ci));
	call_begin();
	m_fail(ci);
	m_reap();
	broker_client_close(B, k->c, "it hung up");
	call_end("client_close");
	CHECK(!k->open, "client_close: still open");
}

static void do_writable(int ci)
{
	struct conn *k = &conns[ci];
	if (!k->open || !k->want_w)
		return;
	trace("%s writable", conn_desc(ci));
	k->want_w = false;
	k->resumed = false;
	call_begin();
	bool resume = false;
	if (!k->m_dead && mstreams[ci].active) {
		int r = m_stream(ci);
		k->m_paused = r == 1;
		resume = r == 0 && !k->m_dead;
	}
	m_reap();
	broker_client_writable(B, k->c);
	call_end("client_writable");
	CHECK(k->resumed == resume, "client_writable: resume %d, expected %d", k->resumed, resume);
}

static void do_timer(void)
{
	trace("timer at %llu", (unsigned long long)clock_ms);
	call_begin();
	for (unsigned i = 0; i < npend_hi; i++) {
		struct mpend *q = &mpend[i];
		if (!q->used)
			continue;
		if (q->deadline > clock_ms)
			break;
		m_subscribed(q->sub, q->seq, -ETIMEDOUT, 0, 0, -1);
		m_pend_drop(q);
	}
	m_reap();
	broker_timer(B);
	call_end("timer");
	/* Everything due went: a deadline not in the future would make the loop
	 * call again at once, forever. */
	CHECK(env_deadline == 0 || env_deadline > clock_ms, "timer at %llu: next deadline %llu",
	      (unsigned long long)clock_ms, (unsigned long long)env_deadline);
}

/* The loop delivers watch w (its process exited). */
static void fire(int w)
{
	struct watch *x = &watches[w];
	trace("process %d (watch %d, %s) exit delivered", (int)procs[x->proc].pid, w,
	      x->kind == W_CLIENT ? "client" : "consumer");
	call_begin();
	if (x->kind == W_CLIENT) {
		m_fail(x->ref);
	} else {
		struct mcons *k = &mcons[x->ref];
		expect_reclaim(k);
		m_cons_free(k);
	}
	m_reap();
	void *cookie = x->cookie;
	broker_process_exited(B, cookie);
	call_end("process_exited");
	CHECK(!watches[w].used, "the watch of an exited process is still held");
}

/* Due watches (their incarnation exited), in order. */
static int due_watch(unsigned which)
{
	unsigned n = 0;
	for (unsigned i = 0; i < nwatch_hi; i++)
		if (watches[i].used && !watch_alive((int)i))
			n++;
	if (!n)
		return -1;
	which %= n;
	for (unsigned i = 0; i < nwatch_hi; i++)
		if (watches[i].used && !watch_alive((int)i) && which-- == 0)
			return (int)i;
	return -1;
}

/* --- building messages ---------------------------------------------------- */

union msgbuf {
	struct bmsg_hdr hdr;
	struct bmsg_register reg;
	struct bmsg_unregister unreg;
	struct bmsg_subscribe sub;
	struct bmsg_status status;
	struct bmsg_introduced intro;
	struct bmsg_consumer_gone gone;
	struct bmsg_reattach_consumer reatt;
	uint8_t b[BMSG_MAX + 16];
};

/* A name from the input; *id is its index, or -1 when invalid. */
static void put_name(struct fz *in, char name[BMSG_NAME_MAX], int *id)
{
	uint8_t n = fz_u8(in);
	memset(name, 0, BMSG_NAME_MAX);
	switch (n & 15) {
	case 8:
		memcpy(name, names[NTABLE + fz_u8(in) % NBULK], BMSG_NAME_MAX);
		break;
	case 9: /* empty */
		break;
	case 10: /* the longest */
		memset(name, 'n', BMSG_NAME_MAX - 1);
		break;
	case 11: /* no NUL */
		memset(name, 'n', BMSG_NAME_MAX);
		break;
	case 12:
		memcpy(name, "po ol", 5);
		break;
	case 13:
		memcpy(name, "pool\0junk", 9);
		break;
	case 14:
		memcpy(name, "pool/../x", 9);
		break;
	case 15:
		fz_bytes(in, name, BMSG_NAME_MAX);
		break;
	default:
		memcpy(name, names[n & 7], BMSG_NAME_MAX);
		break;
	}
	*id = name_id(name);
}

static const uint64_t cap_pick[7] = {0, 1, 4096, 65536, 1u << 20, UINT64_C(1) << 32, (UINT64_C(1) << 32) + 1};
static const uint32_t slots_pick[7] = {1, 8, 64, 0, 65, 2, 31};
static const uint32_t allow_pick[4] = {0, 1000, 1001, 1002};

/* An id and holder: valid, an error, or broken. */
static void put_result(struct fz *in, int32_t *result, uint32_t *holder)
{
	uint8_t s = fz_u8(in);
	uint8_t a = fz_u8(in);
	static const int32_t errs[8] = {-EMFILE, -ENOMEM, -EPERM, -EINVAL, -1, -ERRNO_MAX, -ENOSPC, -EACCES};
	switch (s & 7) {
	case 0:
	case 1:
	case 2:
		*holder = 1u + a % 31u;
		*result = (int32_t)(*holder + 32u * ((a / 31u) % 4u));
		break;
	case 3:
		*result = errs[a & 7];
		*holder = 0;
		break;
	case 4:
		*result = 0;
		*holder = 1u + a % 31u;
		break;
	case 5: {
		static const int32_t odd[4] = {-ERRNO_MAX - 1, INT32_MIN, INT32_MAX, 32};
		*result = odd[a & 3];
		*holder = (uint32_t)*result % 32u;
		break;
	}
	case 6:
		*result = (int32_t)(1u + a % 100u);
		*holder = fz_u8(in);
		break;
	default:
		*result = (int32_t)fz_u32(in);
		*holder = fz_u32(in);
		break;
	}
}

static uint64_t pick_token(struct fz *in)
{
	uint8_t t = fz_u8(in);
	if (t == 0xff)
		return 0;
	if (t == 0xfe)
		return fz_u64(in);
	if (t >= 0xf0 || !any_token)
		return last_token + 1000u + (t & 15u);
	unsigned n = ntokens < NTOKENS ? ntokens : NTOKENS;
	return tokens[(ntokens - 1u - t % n) % NTOKENS];
}

/* A consumer record of pool p (index), -1 when none. */
static int pick_consumer(int p, uint8_t b)
{
	static int ks[NCONS];
	unsigned n = p >= 0 ? m_consumers(p, ks) : 0;
	return n ? ks[b % n] : -1;
}

struct built {
	union msgbuf m;
	size_t len;
	int role; /* the fd the message wants: FK_CTL, FK_RING or 0 */
	unsigned nfds;
	uint64_t cap, region;
	uint32_t slots;
};

static void op_send(struct fz *in)
{
	int ci = fz_u8(in) % NCONN_I;
	struct conn *k = &conns[ci];
	struct built B0;
	memset(&B0, 0, sizeof(B0));
	union msgbuf *m = &B0.m;
	uint8_t opsel = fz_u8(in) % 10;
	uint8_t sq = fz_u8(in);
	uint32_t seq = sq == 0xff ? fz_u32(in) : sq;
	static const unsigned ops[8] = {BOP_REGISTER, BOP_SUBSCRIBE, BOP_STATUS, BOP_INTRODUCED, BOP_CONSUMER_GONE,
					BOP_REATTACH_PRODUCER, BOP_REATTACH_CONSUMER, BOP_UNREGISTER};
	unsigned op;
	if (opsel < 8)
		op = ops[opsel];
	else if (opsel == 8)
		op = BOP_RESULT + fz_u8(in) % 7u;
	else
		op = fz_u8(in);
	size_t len = bmsg_size(op) ? bmsg_size(op) : sizeof(struct bmsg_hdr) + fz_u8(in) % 64u;
	bmsg_init(&m->hdr, op, seq);
	m->hdr.length = (uint32_t)len;
	int name = -1;
	switch (op) {
	case BOP_REGISTER:
	case BOP_REATTACH_PRODUCER: {
		struct bmsg_register *r = &m->reg;
		put_name(in, r->name, &name);
		uint8_t c = fz_u8(in);
		r->capacity = (c & 7) == 7 ? fz_u64(in) : cap_pick[c & 7];
		uint8_t s = fz_u8(in);
		r->slots = (s & 7) == 7 ? s >> 3 : slots_pick[s & 7];
		uint8_t pol = fz_u8(in);
		r->policy = pol < 0xf0 ? pol % 3u : pol;
		uint8_t al = fz_u8(in);
		r->n_uids = al & 15u;
		r->n_gids = al >> 4;
		for (uint32_t i = 0; i < r->n_uids && i < BMSG_ALLOW_MAX; i++)
			r->uids[i] = allow_pick[fz_u8(in) & 3];
		for (uint32_t i = 0; i < r->n_gids && i < BMSG_ALLOW_MAX; i++)
			r->gids[i] = allow_pick[fz_u8(in) & 3] + 1000u * (i & 1);
		uint8_t rg = fz_u8(in);
		int rn = name >= 0 ? name : 0;
		B0.region = rg < 0xf0 ? region_of(rn, rg & 1) : fz_u64(in);
		B0.cap = r->capacity;
		B0.slots = r->slots;
		B0.role = FK_CTL;
		B0.nfds = 1;
		break;
	}
	case BOP_SUBSCRIBE:
		put_name(in, m->sub.name, &name);
		break;
	case BOP_UNREGISTER:
		put_name(in, m->unreg.name, &name);
		break;
	case BOP_INTRODUCED: {
		struct bmsg_introduced *r = &m->intro;
		r->token = pick_token(in);
		put_result(in, &r->result, &r->holder);
		struct mpend *q = m_pend_find(r->token);
		B0.region = q ? mpools[q->pool].region : region_of(0, 0);
		B0.role = FK_RING;
		B0.nfds = r->result > 0;
		break;
	}
	case BOP_CONSUMER_GONE: {
		struct bmsg_consumer_gone *r = &m->gone;
		put_name(in, r->name, &name);
		uint8_t id = fz_u8(in);
		int x = id < 0xf0 ? pick_consumer(name >= 0 && mpools[name].live ? name : -1, id) : -1;
		static const int32_t odd[4] = {0, -1, INT32_MAX, 5};
		r->id = x >= 0 ? mcons[x].id : id < 0xf0 ? (int32_t)(id % 64u) + 1 : odd[id & 3];
		uint8_t reason = fz_u8(in);
		r->reason = reason == 0xff ? 256 : reason;
		uint8_t held = fz_u8(in);
		r->held = held % 70u;
		break;
	}
	case BOP_REATTACH_CONSUMER: {
		struct bmsg_reattach_consumer *r = &m->reatt;
		put_name(in, r->name, &name);
		uint8_t w = fz_u8(in);
		int x = w < 0x80 ? pick_consumer(name >= 0 && mpools[name].live ? name : -1, w) : -1;
		if (x >= 0) {
			r->id = mcons[x].id;
			r->holder = mcons[x].holder;
		} else {
			put_result(in, &r->id, &r->holder);
		}
		uint8_t p = fz_u8(in);
		static const int32_t odd[3] = {0, -1, 99999};
		r->pid = p % 12u < NPROC ? procs[p % 12u].pid
			 : p % 12u < NPROC + 3 ? odd[p % 12u - NPROC]
			 : x >= 0 ? mcons[x].pid
				  : procs[0].pid;
		uint8_t withfd = fz_u8(in);
		B0.nfds = withfd & 1;
		B0.role = FK_RING;
		B0.region = name >= 0 && mpools[name].live ? mpools[name].region : region_of(name >= 0 ? name : 0, 0);
		break;
	}
	default:
		break;
	}
	/* Mutations. */
	uint8_t mut = fz_u8(in);
	unsigned flags = 0;
	if (mut & 1) {
		uint8_t f = fz_u8(in);
		uint8_t v = fz_u8(in);
		switch (f % 4) {
		case 0:
			m->hdr.magic ^= (uint32_t)v + 1u;
			break;
		case 1:
			m->hdr.version = v;
			break;
		case 2:
			m->hdr.opcode = v;
			break;
		default:
			m->hdr.length = (uint32_t)len + (uint32_t)(int8_t)v;
			break;
		}
	}
	if (mut & 2)
		len = (size_t)fz_range(in, 0, BMSG_MAX + 8);
	if (mut & 4) {
		unsigned n = fz_u8(in) % 4u + 1u;
		for (unsigned i = 0; i < n; i++) {
			unsigned off = fz_u16(in) % (unsigned)sizeof(m->b);
			m->b[off] = fz_u8(in);
		}
	}
	if (mut & 8)
		flags |= BROKER_MSG_TRUNC;
	if (mut & 16)
		flags |= BROKER_MSG_CTRUNC;
	if (mut & 32)
		B0.nfds = fz_u8(in) % 4u;
	if (mut & 64) {
		switch (op) {
		case BOP_REGISTER:
		case BOP_REATTACH_PRODUCER:
			m->reg.uids[BMSG_ALLOW_MAX - 1] |= 1u;
			m->reg.gids[BMSG_ALLOW_MAX - 1] |= 1u;
			break;
		case BOP_CONSUMER_GONE:
			m->gone.reserved = 1;
			break;
		case BOP_REATTACH_CONSUMER:
			m->reatt.reserved = 1;
			break;
		default:
			m->b[len > 16 ? len - 1 : 16] ^= 1u;
			break;
		}
	}
	if (!k->open || k->m_paused) {
		/* The loop does not read a paused client; a closed one is gone. */
		for (unsigned i = 0; i < B0.nfds; i++)
			fz_u8(in);
		return;
	}
	if (len >= sizeof(m->hdr) + BMSG_NAME_MAX && name_id((const char *)m->b + sizeof(m->hdr)) == -2)
		return; /* the name table is full (unreachable in practice) */
	if (!fd_room())
		return;
	int fds[4];
	const struct fdrec *fr[4];
	for (unsigned i = 0; i < B0.nfds; i++) {
		struct fdrec *r;
		fds[i] = make_fd(fz_u8(in), B0.role ? B0.role : FK_RING, B0.cap, B0.slots, B0.region, &r);
		fr[i] = r;
	}
	deliver(ci, m->b, len, fds, fr, B0.nfds, flags);
}

static void op_raw(struct fz *in)
{
	int ci = fz_u8(in) % NCONN_I;
	union msgbuf m;
	memset(&m, 0, sizeof(m));
	size_t len = fz_u16(in) % (BMSG_MAX + 9u);
	fz_bytes(in, m.b, len);
	unsigned nfds = fz_u8(in) % 4u;
	uint8_t fl = fz_u8(in);
	unsigned flags = (fl & 1 ? BROKER_MSG_TRUNC : 0u) | (fl & 2 ? BROKER_MSG_CTRUNC : 0u);
	if (!conns[ci].open || conns[ci].m_paused) {
		for (unsigned i = 0; i < nfds; i++)
			fz_u8(in);
		return;
	}
	if (len >= sizeof(m.hdr) + BMSG_NAME_MAX && name_id((const char *)m.b + sizeof(m.hdr)) == -2)
		return;
	if (!fd_room())
		return;
	int fds[4];
	const struct fdrec *fr[4];
	for (unsigned i = 0; i < nfds; i++) {
		struct fdrec *r;
		int role = (fl & 4) ? FK_RING : FK_CTL;
		uint64_t region = (fl & 8) ? region_of(0, 0) : region_of(0, 1);
		fds[i] = make_fd(fz_u8(in), role, 4096, 8, region, &r);
		fr[i] = r;
	}
	deliver(ci, m.b, len, fds, fr, nfds, flags);
}

/* The producer writes its control block (the broker reads it: STATUS,
 * reclaim); or a consumer its ring. */
static void op_producer(struct fz *in)
{
	uint8_t ns = fz_u8(in);
	int p = ns < 0xf0 ? (ns & 7) : NTABLE + (ns & 15);
	uint8_t w = fz_u8(in);
	if (!mpools[p].live) {
		fz_u8(in);
		return;
	}
	struct sv2shm_ctl *ctl = mpools[p].ctl;
	uint8_t a = fz_u8(in);
	switch (w & 3) {
	case 0: { /* a slot's state */
		uint8_t gen = fz_u8(in);
		uint32_t holders = fz_u32(in);
		atomic_store(&ctl->slots[a & 63].state, SV2SHM_STATE(gen, holders));
		break;
	}
	case 1: /* its claim number */
		ctl->slots[a & 63].claim = fz_u8(in);
		break;
	case 2: /* counters, mode, policy */
		atomic_store(&ctl->counters.mode, a & 3);
		atomic_store(&ctl->counters.policy, fz_u8(in) % 4u);
		atomic_store(&ctl->counters.published, fz_u32(in));
		atomic_store(&ctl->counters.live, a);
		break;
	default: { /* publish slot s to a consumer of this pool */
		uint8_t s = fz_u8(in);
		int x = pick_consumer(p, a);
		if (x < 0)
			break;
		uint64_t st = atomic_load(&ctl->slots[s & 63].state);
		uint32_t gen = SV2SHM_STATE_GEN(st) + 1u;
		atomic_store(&ctl->slots[s & 63].state,
			     SV2SHM_STATE(gen, SV2SHM_STATE_HOLDERS(st) | (UINT32_C(1) << mcons[x].holder)));
		ctl->slots[s & 63].claim = gen;
		if (s & 0x80 && mcons[x].ring)
			atomic_store(&mcons[x].ring->waiting, 1u); /* the producer waits: reclaim wakes it */
		break;
	}
	}
}

/* --- bulk: the limits ----------------------------------------------------- */

static unsigned bulk_steps;
static struct fdrec *bulk_tpl;
static int bulk_tpl_fd = -1;

static void send_simple(int ci, unsigned op, int name, int fd, const struct fdrec *fr)
{
	union msgbuf m;
	memset(&m, 0, sizeof(m));
	bmsg_init(&m.hdr, op, (uint32_t)bulk_steps);
	memcpy(m.b + sizeof(m.hdr), names[name], BMSG_NAME_MAX);
	if (op == BOP_REGISTER) {
		m.reg.capacity = 4096;
		m.reg.slots = 8;
	}
	int fds[1] = {fd};
	deliver(ci, m.b, bmsg_size(op), fds, &fr, fd >= 0 ? 1u : 0u, 0);
}

/* The producer on ci answers INTRODUCED / re-attaches a consumer, with a
 * valid ring and the next id of its pool. */
static unsigned next_id[NNAMES];

static void next_consumer_id(int name, int32_t *id, uint32_t *holder)
{
	if (next_id[name] % 32u == 0)
		next_id[name]++;
	*id = (int32_t)next_id[name]++;
	*holder = (uint32_t)*id % 32u;
}

static void send_with_ring(int ci, union msgbuf *m, uint64_t region)
{
	struct fdrec *r;
	int fd = make_fd(0x30, FK_RING, 0, 0, region, &r); /* 16 entries */
	const struct fdrec *fr = r;
	deliver(ci, m->b, m->hdr.length, &fd, &fr, 1, 0);
}

static void op_bulk(struct fz *in)
{
	uint8_t sub = fz_u8(in);
	unsigned count = fz_u16(in);
	unsigned param = sub >> 3;
	switch (sub & 7) {
	case 0: { /* a connection registers bulk pools */
		int ci = (int)(param % NCONN_I);
		count %= NBULK + 1u;
		if (!conns[ci].open || conns[ci].m_paused)
			break;
		if (bulk_tpl_fd < 0) {
			bulk_tpl_fd = make_ctl(4096, 8, region_of(NTABLE, 0), 0, 0, &bulk_tpl);
			CHECK(nheld < 64, "held fds");
			held_fds[nheld++] = bulk_tpl_fd;
		}
		for (unsigned i = 0; i < count && bulk_steps < MAX_BULK && conns[ci].open; i++, bulk_steps++) {
			int fd = fcntl(bulk_tpl_fd, F_DUPFD_CLOEXEC, 0);
			CHECK(fd >= 0, "dup");
			send_simple(ci, BOP_REGISTER, NTABLE + (int)i, fd, bulk_tpl);
		}
		break;
	}
	case 1: { /* connections from one process */
		int p = (int)(param % NPROC);
		count %= NCONN - NCONN_I + 1u;
		unsigned ci = NCONN_I;
		for (unsigned i = 0; i < count && bulk_steps < MAX_BULK; i++, bulk_steps++) {
			while (ci < NCONN && conns[ci].open)
				ci++;
			if (ci == NCONN)
				break;
			do_connect((int)ci, p);
		}
		break;
	}
	case 2: { /* bulk connections subscribe to one pool */
		uint8_t ns = fz_u8(in);
		int name = ns < 0xf0 ? (ns & 7) : NTABLE + (ns & 15);
		count %= 1200u;
		unsigned ci = NCONN_I;
		for (unsigned i = 0; i < count && bulk_steps < MAX_BULK; i++, bulk_steps++) {
			while (ci < nconn_hi && !conns[ci].open)
				ci++;
			if (ci >= nconn_hi)
				break;
			send_simple((int)ci, BOP_SUBSCRIBE, name, -1, NULL);
			if (!(param & 1))
				ci++; /* else: the same one again (its own limit) */
		}
		break;
	}
	case 4: { /* the producer on ci answers what is pending for its pools */
		int ci = (int)(param % NCONN_I);
		static uint64_t toks[NPEND];
		unsigned n = 0;
		for (unsigned i = 0; i < npend_hi; i++)
			if (mpend[i].used && mpools[mpend[i].pool].owner == ci)
				toks[n++] = mpend[i].token;
		for (unsigned i = 0; i < n && i < count && bulk_steps < MAX_BULK; i++, bulk_steps++) {
			struct mpend *q = m_pend_find(toks[i]);
			if (!q || !conns[ci].open || conns[ci].m_paused || !fd_room())
				break;
			union msgbuf m;
			memset(&m, 0, sizeof(m));
			bmsg_init(&m.hdr, BOP_INTRODUCED, (uint32_t)bulk_steps);
			m.intro.token = toks[i];
			next_consumer_id(q->pool, &m.intro.result, &m.intro.holder);
			send_with_ring(ci, &m, mpools[q->pool].region);
		}
		break;
	}
	case 5: { /* the producer on ci re-attaches consumers of one pool */
		int ci = (int)(param % NCONN_I);
		uint8_t ns = fz_u8(in);
		int name = ns < 0xf0 ? (ns & 7) : NTABLE + (ns & 15);
		count %= 100u;
		for (unsigned i = 0; i < count && bulk_steps < MAX_BULK; i++, bulk_steps++) {
			if (!conns[ci].open || conns[ci].m_paused || !fd_room())
				break;
			union msgbuf m;
			memset(&m, 0, sizeof(m));
			bmsg_init(&m.hdr, BOP_REATTACH_CONSUMER, (uint32_t)bulk_steps);
			memcpy(m.reatt.name, names[name], BMSG_NAME_MAX);
			next_consumer_id(name, &m.reatt.id, &m.reatt.holder);
			m.reatt.pid = procs[i % NPROC].pid;
			send_with_ring(ci, &m, mpools[name].live ? mpools[name].region : region_of(name, 0));
		}
		break;
	}
	default: /* the bulk connections hang up */
		for (unsigned ci = NCONN_I; ci < nconn_hi && bulk_steps < MAX_BULK; ci++, bulk_steps++)
			if (conns[ci].open)
				do_hangup((int)ci);
		break;
	}
}

/* --- the input ------------------------------------------------------------ */

enum op {
	OP_SEND = 0,
	OP_SEND2 = 1,
	OP_RAW = 2,
	OP_CONNECT = 3,
	OP_HANGUP = 4,
	OP_DIE = 5,
	OP_DELIVER = 6,
	OP_RESPAWN = 7,
	OP_TIME = 8,
	OP_SOCKET = 9,
	OP_WRITABLE = 10,
	OP_PRODUCER = 11,
	OP_SEND3 = 12,
	OP_BULK = 13,
	OP_TIMER = 14,
	OP_FAULT = 15,
};

static void op_socket(struct fz *in)
{
	int ci = fz_u8(in) % NCONN_I;
	uint8_t mode = fz_u8(in);
	static const int fails[8] = {0, -EAGAIN, -EPIPE, -ECONNRESET, -ENOBUFS, 0, 0, 0};
	static const int rooms[16] = {-1, 0, 1, 2, 3, 5, 8, 33, -1, -1, 0, 1, 4, 40, 100, -1};
	struct conn *k = &conns[ci];
	k->fail = fails[mode & 7];
	k->room = rooms[(mode >> 3) & 15];
	k->wantw_fail = mode >> 7;
	trace("conn %d: send %d, room %d, want_writable %s", ci, k->fail, k->room, k->wantw_fail ? "fails" : "ok");
}

static void run_op(struct fz *in)
{
	uint8_t op = fz_u8(in) % 16u;
	switch (op) {
	case OP_SEND:
	case OP_SEND2:
	case OP_SEND3:
		op_send(in);
		break;
	case OP_RAW:
		op_raw(in);
		break;
	case OP_CONNECT: {
		int ci = fz_u8(in) % NCONN_I;
		int p = fz_u8(in) % NPROC;
		do_connect(ci, p);
		break;
	}
	case OP_HANGUP:
		do_hangup(fz_u8(in) % NCONN_I);
		break;
	case OP_DIE: {
		int p = fz_u8(in) % NPROC;
		if (procs[p].alive)
			trace("process %d dies", (int)procs[p].pid);
		procs[p].alive = false;
		break;
	}
	case OP_DELIVER: {
		uint8_t w = fz_u8(in);
		if (w & 0x80) {
			int x;
			while ((x = due_watch(0)) >= 0)
				fire(x);
		} else {
			int x = due_watch(w);
			if (x >= 0)
				fire(x);
		}
		break;
	}
	case OP_RESPAWN: {
		int p = fz_u8(in) % NPROC;
		uint8_t cr = fz_u8(in);
		if (!procs[p].alive) {
			procs[p].alive = true;
			procs[p].inc++;
			set_creds(p, cr);
			trace("process %d respawned (uid %u gid %u)", (int)procs[p].pid, procs[p].uid, procs[p].gid);
		}
		break;
	}
	case OP_TIME: { /* the loop's timer fires at its deadline, as often as due */
		uint64_t to = clock_ms + fz_u16(in);
		while (env_deadline && env_deadline <= to) {
			if (env_deadline > clock_ms)
				clock_ms = env_deadline;
			do_timer();
		}
		clock_ms = to;
		break;
	}
	case OP_SOCKET:
		op_socket(in);
		break;
	case OP_WRITABLE:
		do_writable(fz_u8(in) % NCONN_I);
		break;
	case OP_PRODUCER:
		op_producer(in);
		break;
	case OP_BULK:
		op_bulk(in);
		break;
	case OP_TIMER:
		do_timer();
		break;
	default: { /* the next watch fails, or the loop refuses a connection */
		static const int errs[4] = {-ENOMEM, -EMFILE, -ESRCH, -EPERM};
		uint8_t f = fz_u8(in);
		if (f & 4) {
			call_begin();
			M.refused++;
			broker_note_refused(B, "no peer credentials");
			call_end("note_refused");
		} else {
			env_inj_watch = errs[f & 3];
		}
		break;
	}
	}
}

/* --- set-up and teardown -------------------------------------------------- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	CHECK(d, "opendir /proc/self/fd: %s", strerror(errno));
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static size_t heap_bytes(void)
{
#ifdef PROTO_ASAN
	return __sanitizer_get_current_allocated_bytes();
#else
	return 0; /* other allocators: LeakSanitizer and valgrind see leaks */
#endif
}

static bool inited;

static void init_once(void)
{
	if (inited)
		return;
	inited = true;
	const char *v = getenv("SV2SHM_FUZZ_VERBOSE");
	verbose = v && *v && *v != '0';
	devnull = fopen("/dev/null", "we");
	log_init(LVL_DEBUG, false);
	/* Warm up what logging allocates once (stdio buffer, time zone). */
	quiet_begin();
	logm(LVL_ERROR, "sv2shm fuzz: protocol %s", strerror(4095));
	quiet_end();
	names_init(); /* the table and bulk names; extras are per input */
}

int sv2shm_fuzz_protocol(const uint8_t *data, size_t size)
{
	init_once();
	struct fz in;
	fz_init(&in, data, size);

	/* Fresh world. */
	nextra = 0;
	memset(procs, 0, sizeof(procs));
	memset(watches, 0, sizeof(watches[0]) * nwatch_hi);
	nwatch_hi = nwatch_used = nwfree = 0;
	memset(cons_watches, 0, sizeof(cons_watches));
	for (unsigned i = 0; i < ndirty; i++)
		is_dirty[dirty[i]] = false;
	ndirty = 0;
	memset(conns, 0, sizeof(conns[0]) * nconn_hi);
	nconn_hi = NCONN_I;
	memset(mpools, 0, sizeof(mpools));
	npend_hi = ncons_hi = nfdrec = nheld = nkept = 0;
	memset(&M, 0, sizeof(M));
	env_deadline = 0;
	env_inj_watch = 0;
	ntokens = 0;
	any_token = false;
	last_token = 0;
	bulk_steps = 0;
	bulk_tpl = NULL;
	bulk_tpl_fd = -1;
	memset(next_id, 0, sizeof(next_id));
	clock_ms = 1000000;

	int fds0 = count_fds();
	size_t heap0 = heap_bytes();

	uint8_t cfg = fz_u8(&in);
	static const unsigned timeouts[4] = {0, 100, 1000, 30000};
	static const uint64_t seeds[4] = {1, 1000, UINT64_C(1) << 32, UINT64_MAX - 2};
	timeout_ms = timeouts[cfg & 3] ? timeouts[cfg & 3] : BROKER_SUBSCRIBE_TIMEOUT_MS;
	uint64_t seed = seeds[(cfg >> 2) & 3];
	for (int i = 0; i < NPROC; i++) {
		procs[i].pid = 4001 + i;
		procs[i].alive = true;
		set_creds(i, fz_u8(&in));
	}
	struct broker_config cfgb = {.version = "0.1.0-fuzz",
				     .event_loop = "fuzz",
				     .token_seed = seed,
				     .subscribe_timeout_ms = timeouts[cfg & 3]};
	M.next_token = seed ? seed : 1;
	M.start_ms = clock_ms;
	quiet_begin();
	int r = broker_new(&ENV, &cfgb, &B);
	quiet_end();
	CHECK(r == 0, "broker_new: %d", r);

	for (unsigned n = 0; n < MAX_OPS && !fz_empty(&in); n++)
		run_op(&in);

	/* Teardown: every client closed, every watch released, nothing kept. */
	trace("broker_free");
	call_begin();
	for (unsigned i = 0; i < nconn_hi; i++)
		if (conns[i].m_open)
			m_fail((int)i);
	/* The broker gives up on every client before cleaning up any: nothing
	 * is sent. */
	for (unsigned i = 0; i < nconn_hi; i++)
		conns[i].fail = -EPIPE;
	m_reap();
	nev = 0;
	broker_free(B);
	B = NULL;
	quiet_end();
	for (unsigned i = 0; i < nconn_hi; i++) {
		struct conn *k = &conns[i];
		if (k->open)
			CHECK(k->closed_now, "broker_free: connection %u not closed", i);
		k->open = false;
	}
	CHECK(nwatch_used == 0, "broker_free: %u process watches still held", nwatch_used);
	for (unsigned i = 0; i < nclose_peers; i++)
		close(close_peers[i]);
	for (unsigned i = 0; i < npend_hi; i++)
		if (mpend[i].peer >= 0)
			close(mpend[i].peer);
	for (unsigned i = 0; i < nheld; i++)
		close(held_fds[i]);
	for (unsigned i = 0; i < nfdrec; i++)
		if (fdrecs[i].map)
			munmap(fdrecs[i].map, fdrecs[i].map_len);
	int fds1 = count_fds();
	CHECK(fds1 == fds0, "%d fds open after broker_free, %d before the input", fds1, fds0);
	size_t heap1 = heap_bytes();
	CHECK(heap1 <= heap0 + 4096, "heap: %zu bytes after broker_free, %zu before the input", heap1, heap0);
	return 0;
}
