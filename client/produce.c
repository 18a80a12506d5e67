/*
 * sv2shm produce --pool NAME [...]
 *
 * Register a pool with the broker, wait for the consumers, then write Sv2
 * frames straight into the pool and publish them: frames decoded from stdin,
 * a file or one loopback TCP connection at a time (the frame decoder reads
 * into the pool: no copy), or synthetic checksummed frames. Consumers come
 * and go while it runs (sv2shm_producer_process()); removals are reported.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CMD "produce"

/* How long a producer WAITs for room in one go when no --wait-timeout-ms was
 * given: it then checks for Ctrl-C and waits again, as long as it takes. */
#define WAIT_SLICE_MS 200
/* How long to wait for consumers to let go of everything before destroying. */
#define DRAIN_MS 5000

struct prod {
	const struct produce_opts *o;
	struct produce_report *rep;
	struct sv2shm_client *client;
	struct sv2shm_producer *p;
	struct sv2shm_buffer *buf;
	bool explicit_wait_timeout;
	uint64_t seq;            /* frames taken so far: the synthetic sequence number */
	uint64_t start_ns, deadline_ns, last_pump_ns, last_client_ns;
	unsigned since_pump;
	uint64_t progress_ns, progress_bytes, progress_sent;
	uint64_t pool_full_retries, undelivered;
	bool limit_bites;        /* --on-limit skip with max_held < slots: consumers may be skipped */
	unsigned max_held;       /* the limit in force */
	uint64_t unattributed;   /* deliveries the per-consumer counts may have wrong */
	int known[SV2SHM_MAX_SLOTS];
	unsigned nknown;
};

/* --- consumers: the ones we know, what each got -------------------------- */

static struct produce_track *track_of(struct prod *P, int id)
{
	struct produce_track *free_one = NULL;
	for (unsigned i = 0; i < PRODUCE_TRACK_MAX; i++) {
		struct produce_track *t = &P->rep->track[i];
		int tid = atomic_load(&t->id);
		if (tid == id)
			return t;
		if (tid == 0 && !free_one)
			free_one = t;
	}
	if (free_one)
		atomic_store(&free_one->id, id);
	return free_one; /* NULL past PRODUCE_TRACK_MAX consumers: not tracked */
}

static void note_new_consumers(struct prod *P)
{
	int ids[32];
	int n = sv2shm_producer_consumers(P->p, ids, 32);
	for (int i = 0; i < n && i < 32; i++) {
		bool seen = false;
		for (unsigned k = 0; k < P->nknown; k++)
			if (P->known[k] == ids[i])
				seen = true;
		if (seen)
			continue;
		if (P->nknown == SV2SHM_MAX_SLOTS) { /* forget the oldest: ids are never reused */
			memmove(P->known, P->known + 1, sizeof(P->known) - sizeof(P->known[0]));
			P->nknown--;
		}
		P->known[P->nknown++] = ids[i];
		track_of(P, ids[i]);
		if (!P->o->quiet)
			cli_note(CMD, "consumer %d subscribed to %s (%d now)", ids[i], P->o->pool, n);
	}
}

static void drain_events(struct prod *P)
{
	struct sv2shm_producer_event ev;
	while (sv2shm_producer_next_event(P->p, &ev) == 1) {
		atomic_fetch_add(&P->rep->removals, 1);
		struct produce_track *t = track_of(P, ev.id);
		if (t) {
			atomic_store(&t->removed, 1);
			atomic_store(&t->reason, ev.reason);
			atomic_store(&t->held_at_removal, ev.held);
		}
		cli_note(CMD, "consumer %d %s: %u slot%s it held reclaimed", ev.id, cli_event_reason(ev.reason),
			 ev.held, ev.held == 1 ? "" : "s");
	}
}

/* Handle the broker and the consumers: introductions, hang-ups, reconnects.
 * Sleeps up to timeout_ns (0: just look) unless `fd` (>= 0) becomes readable
 * first. Returns true when fd is readable. */
static bool pump(struct prod *P, int fd, uint64_t timeout_ns)
{
	struct pollfd pf[3] = {
		{.fd = sv2shm_producer_fd(P->p), .events = POLLIN},
		{.fd = sv2shm_client_fd(P->client), .events = POLLIN},
		{.fd = fd, .events = POLLIN},
	};
	if (pf[1].fd < 0)
		pf[1].fd = -1; /* disconnected: polled by sv2shm_client_process() below */
	struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u), .tv_nsec = (long)(timeout_ns % 1000000000u)};
	int r = ppoll(pf, 3, &ts, NULL);
	uint64_t now = cli_now_ns();
	if (r > 0 && (pf[0].revents || pf[1].revents))
		sv2shm_producer_process(P->p);
	if ((r > 0 && pf[1].revents) || now - P->last_client_ns > 100000000u) {
		sv2shm_client_process(P->client);
		sv2shm_producer_process(P->p);
		P->last_client_ns = now;
	}
	P->last_pump_ns = now;
	P->since_pump = 0;
	drain_events(P);
	note_new_consumers(P);
	return r > 0 && fd >= 0 && (pf[2].revents & (POLLIN | POLLHUP | POLLERR));
}

/* Between frames: look at the consumers every 64 frames or 2 ms. */
static void pump_maybe(struct prod *P)
{
	if (++P->since_pump >= 64 || cli_now_ns() - P->last_pump_ns >= 2000000u)
		pump(P, -1, 0);
}

static bool time_is_up(const struct prod *P)
{
	return P->deadline_ns && cli_now_ns() >= P->deadline_ns;
}

static bool done(const struct prod *P)
{
	return cli_stop || (P->o->count && P->seq >= P->o->count) || time_is_up(P);
}

static unsigned consumer_count(struct prod *P)
{
	int ids[32];
	int n = sv2shm_producer_consumers(P->p, ids, 32);
	return n > 0 ? (unsigned)n : 0;
}

/* Wait until `want` consumers are there. Returns false when told to stop. */
static bool wait_consumers(struct prod *P, unsigned want)
{
	bool said = false;
	while (consumer_count(P) < want) {
		if (cli_stop || time_is_up(P))
			return false;
		if (!said && !P->o->quiet) {
			cli_note(CMD, "pool %s registered; waiting for %u consumer%s (sv2shm consume --pool %s)", P->o->pool,
				 want, want == 1 ? "" : "s", P->o->pool);
			said = true;
		}
		pump(P, -1, 100000000u);
	}
	return true;
}

/* Pace to --rate: sleep (handling consumers) until frame P->seq is due. */
static void pace(struct prod *P)
{
	if (P->o->rate <= 0)
		return;
	uint64_t due = P->start_ns + (uint64_t)((double)P->seq * 1e9 / P->o->rate);
	for (uint64_t now = cli_now_ns(); now < due && !cli_stop; now = cli_now_ns())
		pump(P, -1, due - now);
}

static void progress(struct prod *P)
{
	uint64_t now = cli_now_ns();
	if (P->o->quiet || now - P->progress_ns < 1000000000u)
		return;
	uint64_t bytes = atomic_load(&P->rep->bytes), sent = atomic_load(&P->rep->sent);
	double secs = (double)(now - P->progress_ns) / 1e9;
	cli_note(CMD, "%" PRIu64 " frames  %.0f frames/s  %.2f MB/s  %u consumers  %" PRIu64 " missed", sent,
		 (double)(sent - P->progress_sent) / secs, (double)(bytes - P->progress_bytes) / 1e6 / secs,
		 consumer_count(P), atomic_load(&P->rep->skipped));
	P->progress_ns = now;
	P->progress_bytes = bytes;
	P->progress_sent = sent;
}

/*
 * Publish slice *s (one frame, sequence `seq`) to every consumer or to the
 * next one in turn. Waits for consumers when there are none. Returns 0 (the
 * slice is consumed: published, or released when told to stop) or a fatal
 * negative errno.
 */
static int deliver(struct prod *P, struct sv2shm_slice *s, uint64_t seq)
{
	size_t len = s->len;
	for (;;) {
		int ids[32];
		int n = sv2shm_producer_consumers(P->p, ids, 32);
		if (n > 32)
			n = 32;
		/* Under --on-limit skip, who will be skipped: a consumer holding
		 * max_held slots (publish counts only how many). Holds only shrink
		 * meanwhile, so "below the limit" here means delivered. */
		bool at_limit[32] = {false};
		if (!P->o->round_robin && P->limit_bites && sv2shm_slice_kind(s) == SV2SHM_SLICE_POOL)
			for (int i = 0; i < n; i++)
				at_limit[i] = sv2shm_producer_held(P->p, ids[i]) >= (int)P->max_held;
		int r;
		if (P->o->round_robin)
			r = sv2shm_producer_publish_next(P->p, s, 0);
		else
			r = sv2shm_producer_publish_all(P->p, s, 0);
		if (r == -ENOENT || r == -EAGAIN) {
			/* No consumer (or all at their limit / REFUSE): the slice is still ours. */
			if (r == -ENOENT && !wait_consumers(P, P->o->consumers ? P->o->consumers : 1))
				break;
			if (r == -EAGAIN)
				pump(P, -1, 1000000u);
			if (cli_stop)
				break;
			continue;
		}
		if (r == -ECONNRESET && P->o->round_robin) {
			/* Its socket filled between the check and the send: consumed, not delivered. */
			P->undelivered++;
			return 0;
		}
		if (r < 0) {
			if (sv2shm_slice_kind(s) != SV2SHM_SLICE_NONE)
				sv2shm_slice_release(s);
			return r;
		}
		/* Who got it: with publish_all, everyone but those removed meanwhile
		 * (and, under --on-limit skip, those at their limit). */
		unsigned got = 0;
		if (P->o->round_robin) {
			struct produce_track *t = track_of(P, r);
			if (t) {
				if (atomic_load(&t->delivered) == 0)
					atomic_store(&t->first_seq, seq);
				atomic_store(&t->last_seq, seq);
				atomic_fetch_add(&t->delivered, 1);
			}
			got = 1;
		} else {
			unsigned removed = 0, skipped = 0;
			bool gone[32] = {false};
			for (int i = 0; r > 0 && i < n; i++) {
				gone[i] = sv2shm_producer_held(P->p, ids[i]) == -ESRCH;
				removed += gone[i];
				skipped += !gone[i] && at_limit[i];
			}
			bool exact = r == 0 || removed + skipped == (unsigned)r;
			if (!exact) /* a full socket, or a release between the look and the publish */
				P->unattributed += (uint64_t)abs(r - (int)(removed + skipped));
			for (int i = 0; i < n; i++) {
				if (r > 0 && (gone[i] || at_limit[i]))
					continue;
				struct produce_track *t = track_of(P, ids[i]);
				if (t) {
					if (atomic_load(&t->delivered) == 0)
						atomic_store(&t->first_seq, seq);
					atomic_store(&t->last_seq, seq);
					atomic_fetch_add(&t->delivered, 1);
				}
			}
			if ((unsigned)r > removed)
				atomic_fetch_add(&P->rep->skipped, (unsigned)r - removed);
			got = (unsigned)n > (unsigned)r ? (unsigned)n - (unsigned)r : 0;
		}
		if (got) {
			atomic_fetch_add(&P->rep->sent, 1);
			atomic_fetch_add(&P->rep->bytes, len);
		} else {
			P->undelivered++;
		}
		return 0;
	}
	/* Told to stop while holding a frame nobody took. */
	if (sv2shm_slice_kind(s) != SV2SHM_SLICE_NONE)
		sv2shm_slice_release(s);
	return 0;
}

/* A pool call failed for lack of room: retry (return 0) or give up (< 0). */
static int room_error(struct prod *P, int err, uint64_t frame_len)
{
	switch (err) {
	case -EAGAIN: /* --policy fail: the pool is full now */
		P->pool_full_retries++;
		pump(P, -1, 1000000u);
		return 0;
	case -ETIMEDOUT:
		if (!P->explicit_wait_timeout) /* our own slice of the wait: go on waiting */
			return 0;
		return cli_fail(CMD, err, "the pool stayed full for %d ms (--wait-timeout-ms): consumers do not release",
				P->o->reg.producer.pool.wait_timeout_ms),
		       err;
	case -EMSGSIZE:
	case -ENOBUFS:
		if (frame_len)
			cli_fail(CMD, err, "a frame of %" PRIu64 " bytes cannot fit a pool of %" PRIu64
					   " bytes (--capacity, or --policy fallback)",
				 frame_len, P->o->reg.producer.pool.capacity);
		else
			cli_fail(CMD, err, "a frame is larger than the whole pool of %" PRIu64
					   " bytes (--capacity, or --policy fallback)",
				 P->o->reg.producer.pool.capacity);
		return err;
	default:
		cli_fail(CMD, err, "writing a frame into the pool");
		return err;
	}
}

/* --- sources --------------------------------------------------------------- */

static int run_synthetic(struct prod *P)
{
	while (!done(P)) {
		pace(P);
		if (cli_stop)
			break;
		uint32_t payload = synth_length(P->seq, P->o->synth_min, P->o->synth_max);
		size_t len = SV2SHM_FRAME_HEADER_SIZE + (size_t)payload;
		uint8_t *w = sv2shm_buffer_get_writable(P->buf, len);
		if (!w) {
			int r = room_error(P, sv2shm_buffer_last_error(P->buf), len);
			if (r < 0)
				return r;
			continue;
		}
		synth_fill(w, P->seq, payload);
		struct sv2shm_slice s;
		sv2shm_buffer_get_data_owned(P->buf, &s);
		int r = deliver(P, &s, P->seq);
		if (r < 0)
			return cli_fail(CMD, r, "publishing frame %" PRIu64, P->seq), r;
		P->seq++;
		pump_maybe(P);
		progress(P);
	}
	return 0;
}

/* Decode frames from fd into the pool and publish them until the stream
 * ends (-ENODATA), the count is reached, or we are told to stop. Returns 0
 * at the clean end of the stream, 1 when the stream is not over (stopped),
 * or a negative errno (message printed; -EPROTO / -EMSGSIZE: a bad stream). */
static int run_stream(struct prod *P, int fd, const char *what)
{
	struct sv2shm_frame_decoder *d;
	int r = sv2shm_frame_decoder_new(P->buf, 0, &d);
	if (r < 0)
		return cli_fail(CMD, r, "frame decoder"), r;
	int ret = 1;
	uint64_t frames = 0;
	while (!done(P)) {
		pace(P);
		if (cli_stop)
			break;
		struct sv2shm_frame f;
		r = sv2shm_frame_decoder_read_fd(d, fd, &f);
		if (r == 1) {
			r = deliver(P, &f.slice, P->seq);
			if (r < 0) {
				ret = r;
				cli_fail(CMD, r, "publishing frame %" PRIu64, P->seq);
				break;
			}
			P->seq++;
			frames++;
			pump_maybe(P);
			progress(P);
			continue;
		}
		if (r == 0) { /* non-blocking and nothing to read now */
			pump(P, fd, 100000000u);
			continue;
		}
		if (r == -ENODATA) {
			ret = 0;
			break;
		}
		if (r == -EINTR)
			continue;
		if (r == -EPROTO) {
			cli_fail(CMD, r, "%s ended inside a frame (after %" PRIu64 " whole frames): the partial frame is dropped",
				 what, frames);
			ret = r;
			break;
		}
		if (r == -EMSGSIZE) {
			cli_fail(CMD, r, "%s: a header announces more payload than a frame may carry: not an Sv2 frame stream",
				 what);
			ret = r;
			break;
		}
		if (r == -EAGAIN || r == -ETIMEDOUT || r == -ENOBUFS) {
			int e = room_error(P, r, 0);
			if (e < 0) {
				ret = e;
				break;
			}
			continue;
		}
		cli_fail(CMD, r, "reading %s", what);
		ret = r;
		break;
	}
	sv2shm_frame_decoder_free(d);
	return ret;
}

/* fd: standard input, or --file opened before the pool was registered. */
static int run_fd_source(struct prod *P, int fd)
{
	const char *what = P->o->source == SOURCE_FILE ? P->o->path : "standard input";
	/* Anything but a regular file may stall: read it without blocking so
	 * the consumers are looked after meanwhile. Put the flags back after. */
	struct stat sb;
	int old_flags = fcntl(fd, F_GETFL);
	bool nonblock = fstat(fd, &sb) == 0 && !S_ISREG(sb.st_mode) && old_flags >= 0 && !(old_flags & O_NONBLOCK);
	if (nonblock)
		fcntl(fd, F_SETFL, old_flags | O_NONBLOCK);
	int r = run_stream(P, fd, what);
	if (nonblock)
		fcntl(fd, F_SETFL, old_flags);
	return r < 0 ? -1 : 0;
}

/* "127.0.0.1:PORT", "[::1]:PORT": loopback only. Returns 0, -EINVAL (not that
 * form) or -EADDRNOTAVAIL (not a loopback address). */
static int produce_parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[64];
	const char *port;
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = 0;
		port = end + 2;
	} else {
		const char *colon = strrchr(spec, ':');
		if (!colon || (size_t)(colon - spec) >= sizeof(host))
			return -EINVAL;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = 0;
		port = colon + 1;
	}
	uint64_t pnum;
	if (cli_parse_u64(port, 0, 65535, false, &pnum) < 0)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
			return -EADDRNOTAVAIL;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)pnum);
		*sl = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
			return -EADDRNOTAVAIL;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)pnum);
		*sl = sizeof(*a6);
		return 0;
	}
	return -EINVAL;
}

static void addr_text(const struct sockaddr_storage *ss, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
		snprintf(buf, size, "%s:%u", host, port);
	} else {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
		snprintf(buf, size, "[%s]:%u", host, port);
	}
}

/* Listen on the --listen address (loopback only, checked with the options),
 * before waiting for consumers: a bad address fails at once, and a sender may
 * connect early (it waits in the backlog). Returns the socket or -1. */
static int open_listener(const struct produce_opts *o)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (produce_parse_listen(o->listen, &ss, &sl) < 0)
		return cli_note(CMD, "--listen %s: not a loopback address and port", o->listen), -1;
	int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0)
		return cli_fail(CMD, -errno, "socket"), -1;
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ss, sl) < 0 || listen(lfd, 1) < 0) {
		int e = -errno;
		close(lfd);
		return cli_fail(CMD, e, "cannot listen on %s", o->listen), -1;
	}
	sl = sizeof(ss);
	getsockname(lfd, (struct sockaddr *)&ss, &sl);
	char where[80];
	addr_text(&ss, where, sizeof(where));
	cli_note(CMD, "listening on %s: one connection at a time, Sv2 frames", where);
	return lfd;
}

static int run_listen(struct prod *P, int lfd)
{
	int ret = 0;
	while (!done(P)) {
		if (!pump(P, lfd, 100000000u))
			continue;
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		int cfd = accept4(lfd, (struct sockaddr *)&peer, &pl, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cfd < 0)
			continue;
		char from[80];
		addr_text(&peer, from, sizeof(from));
		if (!P->o->quiet)
			cli_note(CMD, "connection from %s", from);
		uint64_t before = P->seq;
		char what[120];
		snprintf(what, sizeof(what), "the connection from %s", from);
		int r = run_stream(P, cfd, what);
		close(cfd);
		if (r < 0 && r != -EPROTO && r != -EMSGSIZE && r != -ENOBUFS && r != -ECONNRESET) {
			ret = -1; /* the pool or the consumers, not this peer: give up */
			break;
		}
		if (!P->o->quiet)
			cli_note(CMD, "connection from %s closed after %" PRIu64 " frames", from, P->seq - before);
	}
	return ret;
}

/* --- the run ------------------------------------------------------------------- */

/* Wait (bounded) for the consumers to let go of every slot. */
static void drain(struct prod *P)
{
	struct sv2shm_pool *pool = sv2shm_producer_pool(P->p);
	uint64_t until = cli_now_ns() + (uint64_t)DRAIN_MS * 1000000u;
	struct sv2shm_pool_stats st;
	while (sv2shm_pool_stats(pool, &st) == 0 && st.live > 0 && cli_now_ns() < until)
		pump(P, -1, 5000000u);
	if (st.live > 0)
		cli_note(CMD, "%" PRIu64 " slot%s still held by consumers after %d ms: destroying the producer anyway "
			      "(their slices stay readable)",
			 st.live, st.live == 1 ? "" : "s", DRAIN_MS);
}

/* The pool's counters as the broker shows them (for reclaimed). */
static void read_counters(struct prod *P)
{
	struct sv2shm_status *st;
	if (sv2shm_client_status(P->client, &st) < 0)
		return;
	for (unsigned i = 0; i < st->npools; i++)
		if (!strncmp(st->pools[i].name, P->o->pool, sizeof(st->pools[i].name)) &&
		    st->pools[i].pid == getpid())
			atomic_store(&P->rep->reclaimed, st->pools[i].counters.reclaimed);
	sv2shm_status_free(st);
}

static void summary(struct prod *P)
{
	double secs = (double)(cli_now_ns() - P->start_ns) / 1e9;
	uint64_t sent = atomic_load(&P->rep->sent), bytes = atomic_load(&P->rep->bytes);
	cli_note(CMD, "sent %" PRIu64 " frames, %" PRIu64 " bytes in %.1f s (%.0f frames/s, %.1f MB/s); %" PRIu64
		      " missed by consumers at their limit; %" PRIu64 " removals; %" PRIu64 " holds reclaimed",
		 sent, bytes, secs, secs > 0 ? (double)sent / secs : 0.0, secs > 0 ? (double)bytes / 1e6 / secs : 0.0,
		 atomic_load(&P->rep->skipped), atomic_load(&P->rep->removals), atomic_load(&P->rep->reclaimed));
	if (P->undelivered)
		cli_note(CMD, "%" PRIu64 " frames reached no consumer (each was gone or at its limit)", P->undelivered);
	if (P->unattributed)
		cli_note(CMD, "(the per-consumer counts below may be off by %" PRIu64
			      ": a consumer was skipped for a full socket, or released while being counted)",
			 P->unattributed);
	if (P->pool_full_retries)
		cli_note(CMD, "the pool was full %" PRIu64 " times (--policy fail): retried", P->pool_full_retries);
	for (unsigned i = 0; i < PRODUCE_TRACK_MAX; i++) {
		struct produce_track *t = &P->rep->track[i];
		if (!atomic_load(&t->id))
			continue;
		char gone[96] = "";
		if (atomic_load(&t->removed))
			snprintf(gone, sizeof(gone), ", %s", cli_event_reason(atomic_load(&t->reason)));
		cli_note(CMD, "  consumer %d: %" PRIu64 " frames delivered%s", atomic_load(&t->id),
			 atomic_load(&t->delivered), gone);
	}
}

int produce_run(const struct produce_opts *o)
{
	struct produce_report own;
	struct prod P = {.o = o, .rep = o->report ? o->report : &own};
	if (!o->report)
		memset(&own, 0, sizeof(own));
	/* Our own slices of the wait unless the user set a timeout (see WAIT_SLICE_MS). */
	struct sv2shm_register_options reg = o->reg;
	P.explicit_wait_timeout = reg.producer.pool.wait_timeout_ms != 0;
	unsigned slots = reg.producer.pool.slots ? reg.producer.pool.slots : SV2SHM_DEFAULT_SLOTS;
	P.max_held = reg.producer.max_held ? reg.producer.max_held : (slots > 1 ? slots - 1 : 1);
	P.limit_bites = reg.producer.on_limit == SV2SHM_LIMIT_SKIP && P.max_held < slots;
	if (!P.explicit_wait_timeout)
		reg.producer.pool.wait_timeout_ms = WAIT_SLICE_MS;

	int ret = 1;
	int in_fd = 0;  /* the frames (SOURCE_STDIN, SOURCE_FILE) */
	int lfd = -1;   /* SOURCE_LISTEN */
	if (o->source == SOURCE_FILE) {
		struct stat sb;
		if ((in_fd = open(o->path, O_RDONLY | O_CLOEXEC)) < 0) {
			cli_fail(CMD, -errno, "cannot open %s", o->path);
			goto out;
		}
		if (fstat(in_fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
			cli_fail(CMD, -EISDIR, "cannot read frames from %s", o->path);
			goto out;
		}
	}
	if (o->source == SOURCE_LISTEN && (lfd = open_listener(o)) < 0)
		goto out;
	if (cli_connect(CMD, o->socket, &P.client) < 0)
		goto out;
	int r = sv2shm_client_register(P.client, o->pool, &reg, &P.p);
	if (r < 0) {
		if (r == -EEXIST)
			cli_fail(CMD, r, "a live producer already registered pool %s", o->pool);
		else
			cli_fail(CMD, r, "cannot register pool %s", o->pool);
		goto close;
	}
	atomic_store(&P.rep->registered, 1);
	P.buf = sv2shm_producer_buffer(P.p);
	P.last_pump_ns = P.last_client_ns = cli_now_ns();
	if (!o->quiet)
		cli_note(CMD, "pool %s: %" PRIu64 " bytes, %u slots, policy %s, wakes via %s", o->pool,
			 reg.producer.pool.capacity, reg.producer.pool.slots ? reg.producer.pool.slots : SV2SHM_DEFAULT_SLOTS,
			 cli_policy_name(reg.producer.pool.policy), sv2shm_producer_notify_name(P.p));

	int run = 0;
	if (wait_consumers(&P, o->consumers)) {
		atomic_store(&P.rep->started, 1);
		P.start_ns = P.progress_ns = cli_now_ns();
		if (o->duration_ms)
			P.deadline_ns = P.start_ns + o->duration_ms * 1000000u;
		switch (o->source) {
		case SOURCE_SYNTHETIC:
			run = run_synthetic(&P);
			break;
		case SOURCE_LISTEN:
			run = run_listen(&P, lfd);
			break;
		default:
			run = run_fd_source(&P, in_fd);
			break;
		}
	} else {
		P.start_ns = cli_now_ns();
	}
	drain(&P);
	drain_events(&P);
	read_counters(&P);
	if (!o->no_summary)
		summary(&P);
	r = sv2shm_producer_destroy(P.p);
	if (r < 0)
		cli_fail(CMD, r, "destroying the producer");
	ret = run < 0 || r < 0 ? 1 : 0;
close:
	sv2shm_client_close(P.client);
out:
	if (lfd >= 0)
		close(lfd);
	if (in_fd > 0)
		close(in_fd);
	atomic_store(&P.rep->finished, 1);
	return ret;
}

/* --- options ------------------------------------------------------------------- */

static void produce_usage(FILE *f)
{
	fprintf(f,
		"usage: sv2shm produce --pool NAME [OPTIONS]\n\n"
		"Register pool NAME, wait for consumers, publish Sv2 frames into it: decoded from\n"
		"stdin (default), --file or --listen, or --synthetic. By default nothing is lost: a\n"
		"slow consumer slows the producer down (--policy wait, no --max-held limit).\n\n"
		"pool:\n"
		"  --pool NAME            1..63 of [A-Za-z0-9._-] (required)\n"
		"  --capacity BYTES       region size, 0 .. 4G, K/M/G suffixes (default 1M)\n"
		"  --slots N              1 .. 64 (default 8)\n"
		"  --policy P             fallback | fail | wait: what a full pool does (default wait)\n"
		"  --wait-timeout-ms MS   wait: give up after MS ms (default: wait as long as it takes)\n"
		"  --max-held N           most slots one consumer may hold, 1 .. slots (default: slots, no limit)\n"
		"  --on-limit L           skip | disconnect | refuse: a consumer at its limit (default skip)\n"
		"  --allow-uid UID        another uid that may subscribe (repeat, up to 8)\n"
		"  --allow-gid GID        a primary gid that may subscribe (repeat, up to 8)\n"
		"frames:\n"
		"  --file PATH            read Sv2 frames from PATH\n"
		"  --listen ADDR:PORT     read Sv2 frames from TCP connections on 127.0.0.0/8 or [::1], one at a time\n"
		"  --synthetic MIN-MAX    generate checksummed frames of MIN..MAX payload bytes (MIN >= 12)\n"
		"  --count N              stop after N frames (default: end of input; forever for synthetic)\n"
		"  --rate PER_S           frames per second (default: as fast as possible)\n"
		"delivery:\n"
		"  --consumers N          wait for N consumers before the first frame (default 1)\n"
		"  --round-robin          each frame to one consumer in turn (default: to all)\n"
		"  --quiet                no progress lines\n"
		"  --socket PATH          the broker's socket (default: %s)\n"
		"  --help                 this text\n",
		cli_default_socket());
}

int cmd_produce(int argc, char **argv)
{
	enum {
		O_SOCKET = 256, O_POOL, O_CAPACITY, O_SLOTS, O_POLICY, O_WAIT_TIMEOUT, O_MAX_HELD, O_ON_LIMIT,
		O_ALLOW_UID, O_ALLOW_GID, O_SYNTHETIC, O_COUNT, O_RATE, O_FILE, O_LISTEN, O_CONSUMERS,
		O_ROUND_ROBIN, O_QUIET,
	};
	static const struct option opts[] = {
		{"socket", required_argument, NULL, O_SOCKET},
		{"pool", required_argument, NULL, O_POOL},
		{"capacity", required_argument, NULL, O_CAPACITY},
		{"slots", required_argument, NULL, O_SLOTS},
		{"policy", required_argument, NULL, O_POLICY},
		{"wait-timeout-ms", required_argument, NULL, O_WAIT_TIMEOUT},
		{"max-held", required_argument, NULL, O_MAX_HELD},
		{"on-limit", required_argument, NULL, O_ON_LIMIT},
		{"allow-uid", required_argument, NULL, O_ALLOW_UID},
		{"allow-gid", required_argument, NULL, O_ALLOW_GID},
		{"synthetic", required_argument, NULL, O_SYNTHETIC},
		{"count", required_argument, NULL, O_COUNT},
		{"rate", required_argument, NULL, O_RATE},
		{"file", required_argument, NULL, O_FILE},
		{"listen", required_argument, NULL, O_LISTEN},
		{"consumers", required_argument, NULL, O_CONSUMERS},
		{"round-robin", no_argument, NULL, O_ROUND_ROBIN},
		{"quiet", no_argument, NULL, O_QUIET},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct produce_opts o = {.consumers = 1, .source = SOURCE_STDIN};
	struct sv2shm_producer_options *po = &o.reg.producer;
	/* Lossless by default: a slow consumer slows the producer down (policy
	 * wait, no per-consumer limit) instead of missing frames. */
	po->pool.capacity = 1u << 20;
	po->pool.slots = SV2SHM_DEFAULT_SLOTS;
	po->pool.policy = SV2SHM_POOL_WAIT;
	uint64_t v, max_held = 0;
	int sources = 0;
	int c;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case O_SOCKET:
			o.socket = optarg;
			break;
		case O_POOL:
			if (!cli_name_ok(optarg))
				return cli_usage_error(CMD, "--pool: '%s' is not a pool name (1..63 of A-Z a-z 0-9 . _ -)", optarg);
			o.pool = optarg;
			break;
		case O_CAPACITY:
			if (cli_parse_u64(optarg, 0, SV2SHM_POOL_MAX_CAPACITY, true, &v) < 0)
				return cli_usage_error(CMD, "--capacity takes 0 .. 4G bytes (K/M/G suffixes), not '%s'", optarg);
			po->pool.capacity = v;
			break;
		case O_SLOTS:
			if (cli_parse_u64(optarg, 1, SV2SHM_MAX_SLOTS, false, &v) < 0)
				return cli_usage_error(CMD, "--slots takes 1 .. %d, not '%s'", SV2SHM_MAX_SLOTS, optarg);
			po->pool.slots = (unsigned)v;
			break;
		case O_POLICY: {
			int p = cli_policy_parse(optarg);
			if (p < 0)
				return cli_usage_error(CMD, "--policy takes fallback, fail or wait, not '%s'", optarg);
			po->pool.policy = p;
			break;
		}
		case O_WAIT_TIMEOUT:
			if (cli_parse_u64(optarg, 1, INT32_MAX, false, &v) < 0)
				return cli_usage_error(CMD, "--wait-timeout-ms takes 1 .. %d, not '%s'", INT32_MAX, optarg);
			po->pool.wait_timeout_ms = (int)v;
			break;
		case O_MAX_HELD:
			if (cli_parse_u64(optarg, 1, SV2SHM_MAX_SLOTS, false, &max_held) < 0)
				return cli_usage_error(CMD, "--max-held takes 1 .. %d, not '%s'", SV2SHM_MAX_SLOTS, optarg);
			break;
		case O_ON_LIMIT: {
			int l = cli_limit_parse(optarg);
			if (l < 0)
				return cli_usage_error(CMD, "--on-limit takes skip, disconnect or refuse, not '%s'", optarg);
			po->on_limit = l;
			break;
		}
		case O_ALLOW_UID:
			if (o.reg.n_uids == SV2SHM_ALLOW_MAX)
				return cli_usage_error(CMD, "at most %d --allow-uid", SV2SHM_ALLOW_MAX);
			if (cli_parse_u64(optarg, 0, UINT32_MAX - 1, false, &v) < 0)
				return cli_usage_error(CMD, "--allow-uid takes a numeric uid, not '%s'", optarg);
			o.reg.uids[o.reg.n_uids++] = (uid_t)v;
			break;
		case O_ALLOW_GID:
			if (o.reg.n_gids == SV2SHM_ALLOW_MAX)
				return cli_usage_error(CMD, "at most %d --allow-gid", SV2SHM_ALLOW_MAX);
			if (cli_parse_u64(optarg, 0, UINT32_MAX - 1, false, &v) < 0)
				return cli_usage_error(CMD, "--allow-gid takes a numeric gid, not '%s'", optarg);
			o.reg.gids[o.reg.n_gids++] = (gid_t)v;
			break;
		case O_SYNTHETIC: {
			uint64_t lo, hi;
			if (cli_parse_range(optarg, SYNTH_MIN_PAYLOAD, SV2SHM_FRAME_MAX_PAYLOAD, &lo, &hi) < 0)
				return cli_usage_error(CMD, "--synthetic takes MIN-MAX payload bytes, %u <= MIN <= MAX <= %u, not '%s'",
						       SYNTH_MIN_PAYLOAD, SV2SHM_FRAME_MAX_PAYLOAD, optarg);
			o.synth_min = (uint32_t)lo;
			o.synth_max = (uint32_t)hi;
			o.source = SOURCE_SYNTHETIC;
			sources++;
			break;
		}
		case O_COUNT:
			if (cli_parse_u64(optarg, 1, UINT64_MAX, false, &o.count) < 0)
				return cli_usage_error(CMD, "--count takes a number of frames >= 1, not '%s'", optarg);
			break;
		case O_RATE: {
			char *end;
			errno = 0;
			double rate = strtod(optarg, &end);
			if (end == optarg || *end || errno || !(rate > 0) || rate > 1e9)
				return cli_usage_error(CMD, "--rate takes frames per second (> 0), not '%s'", optarg);
			o.rate = rate;
			break;
		}
		case O_FILE:
			o.path = optarg;
			o.source = SOURCE_FILE;
			sources++;
			break;
		case O_LISTEN: {
			struct sockaddr_storage ss;
			socklen_t sl;
			int r = produce_parse_listen(optarg, &ss, &sl);
			if (r == -EADDRNOTAVAIL)
				return cli_usage_error(CMD, "--listen: %s is not a loopback address (127.0.0.0/8 or [::1] only)",
						       optarg);
			if (r < 0)
				return cli_usage_error(CMD, "--listen takes 127.0.0.1:PORT or [::1]:PORT, not '%s'", optarg);
			o.listen = optarg;
			o.source = SOURCE_LISTEN;
			sources++;
			break;
		}
		case O_CONSUMERS:
			if (cli_parse_u64(optarg, 1, 31, false, &v) < 0)
				return cli_usage_error(CMD, "--consumers takes 1 .. 31, not '%s'", optarg);
			o.consumers = (unsigned)v;
			break;
		case O_ROUND_ROBIN:
			o.round_robin = true;
			break;
		case O_QUIET:
			o.quiet = true;
			break;
		case 'h':
			produce_usage(stdout);
			return 0;
		default:
			return cli_getopt_error(CMD, c, argv, optind);
		}
	}
	if (optind < argc)
		return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
	if (!o.pool)
		return cli_usage_error(CMD, "--pool NAME is required");
	if (sources > 1)
		return cli_usage_error(CMD, "--file, --listen and --synthetic are three sources: choose one");
	if (max_held > po->pool.slots)
		return cli_usage_error(CMD, "--max-held %" PRIu64 " is more than the pool's %u slots", max_held,
				       po->pool.slots);
	if (po->pool.wait_timeout_ms && po->pool.policy != SV2SHM_POOL_WAIT)
		return cli_usage_error(CMD, "--wait-timeout-ms goes with --policy wait");
	po->max_held = max_held ? (unsigned)max_held : po->pool.slots;
	cli_catch_signals();
	return produce_run(&o);
}
