/*
 * sv2shm consume --pool NAME [...]
 *
 * Subscribe to a pool through the broker and receive its frames in place:
 * print them (a line each, or a hex dump), check synthetic ones (--checksum),
 * hold each for a while (--hold-ms) to see the slots fill, count everything.
 */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "consume"

/* Most frames held at once with --hold-ms (the oldest goes early past that). */
#define HOLD_MAX 1024
/* Longest single recv wait: signals and the broker are looked at in between. */
#define RECV_SLICE_MS 250
/* Per-frame complaints printed before going quiet (they are all counted). */
#define COMPLAINTS_MAX 20

struct held {
	struct sv2shm_slice s;
	uint64_t due_ns;
};

struct cons {
	const struct consume_opts *o;
	struct consume_report *rep;
	FILE *out;                 /* per-frame output: stdout, stderr with --json */
	struct held *q;            /* --hold-ms: a FIFO of held frames */
	unsigned q_head, q_len;
	bool have_seq;
	uint64_t last_seq;
	unsigned complaints;
};

static void complain(struct cons *C, const char *fmt, ...) CLI_PRINTF(2, 3);

static void complain(struct cons *C, const char *fmt, ...)
{
	if (C->complaints++ >= COMPLAINTS_MAX) {
		if (C->complaints == COMPLAINTS_MAX + 1)
			cli_note(CMD, "(more problems are counted, not printed)");
		return;
	}
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cli_note(CMD, "%s", msg);
}

static void release_oldest(struct cons *C)
{
	struct held *h = &C->q[C->q_head];
	sv2shm_slice_release(&h->s);
	C->q_head = (C->q_head + 1) % HOLD_MAX;
	C->q_len--;
	atomic_store(&C->rep->held_now, (int)C->q_len);
}

static void release_due(struct cons *C, uint64_t now)
{
	while (C->q_len && C->q[C->q_head].due_ns <= now)
		release_oldest(C);
}

static void check_synthetic(struct cons *C, const uint8_t *p, size_t len, uint64_t n, char *verdict, size_t vsize)
{
	uint64_t seq = 0;
	const char *bad = synth_check(p, len, &seq);
	if (!bad && C->have_seq && seq <= C->last_seq) {
		snprintf(verdict, vsize, "  CORRUPT: sequence %" PRIu64 " after %" PRIu64, seq, C->last_seq);
		atomic_fetch_add(&C->rep->corrupt, 1);
		complain(C, "frame %" PRIu64 ": sequence %" PRIu64 " after %" PRIu64 " (repeated or out of order)", n, seq,
			 C->last_seq);
		return;
	}
	if (bad) {
		snprintf(verdict, vsize, "  CORRUPT: %s", bad);
		atomic_fetch_add(&C->rep->corrupt, 1);
		complain(C, "frame %" PRIu64 " (%zu bytes): %s", n, len, bad);
		return;
	}
	if (C->have_seq && seq > C->last_seq + 1)
		atomic_fetch_add(&C->rep->gaps, seq - C->last_seq - 1);
	if (!C->have_seq)
		atomic_store(&C->rep->first_seq, seq);
	C->have_seq = true;
	C->last_seq = seq;
	atomic_store(&C->rep->last_seq, seq);
	atomic_fetch_add(&C->rep->verified, 1);
	snprintf(verdict, vsize, "  seq %" PRIu64 " ok", seq);
}

static void handle_frame(struct cons *C, struct sv2shm_slice *s)
{
	const uint8_t *p = s->data;
	size_t len = s->len;
	uint64_t n = atomic_load(&C->rep->received);
	char verdict[160] = "";
	if (C->o->checksum)
		check_synthetic(C, p, len, n, verdict, sizeof(verdict));
	bool show = !C->o->quiet;
	if (show && len < SV2SHM_FRAME_HEADER_SIZE) {
		fprintf(C->out, "frame %" PRIu64 ": %zu bytes: shorter than an Sv2 header%s\n", n, len, verdict);
	} else if (show) {
		unsigned ext = (unsigned)(p[0] | p[1] << 8);
		unsigned msg_len = (unsigned)(p[3] | p[4] << 8 | p[5] << 16);
		char mismatch[64] = "";
		if (msg_len != len - SV2SHM_FRAME_HEADER_SIZE)
			snprintf(mismatch, sizeof(mismatch), " (but %zu payload bytes)", len - SV2SHM_FRAME_HEADER_SIZE);
		fprintf(C->out, "frame %" PRIu64 ": ext 0x%04x%s msg_type 0x%02x length %u%s%s\n", n, ext,
			ext & SV2SHM_FRAME_CHANNEL_BIT ? " (channel)" : "", p[2], msg_len, mismatch, verdict);
	}
	if (show && C->o->hexdump)
		print_hexdump(C->out, p, len);
	/* Counted before the release: what a SIGKILL finds in the report was read. */
	atomic_fetch_add(&C->rep->bytes, len);
	atomic_fetch_add(&C->rep->received, 1);
	if (C->o->hold_ms == 0) {
		sv2shm_slice_release(s);
		return;
	}
	if (C->q_len == HOLD_MAX)
		release_oldest(C);
	struct held *h = &C->q[(C->q_head + C->q_len) % HOLD_MAX];
	h->s = *s;
	h->due_ns = cli_now_ns() + C->o->hold_ms * 1000000u;
	C->q_len++;
	atomic_store(&C->rep->held_now, (int)C->q_len);
}

static bool skippable(int r)
{
	switch (r) {
	case -EBADMSG:
	case -EMSGSIZE:
	case -ENXIO:
	case -ERANGE:
	case -ESTALE:
	case -EACCES:
	case -ENOENT:
	case -EFAULT:
	case -EEXIST:
		return true;
	default:
		return false;
	}
}

int consume_run(const struct consume_opts *o)
{
	struct consume_report own;
	struct cons C = {.o = o, .rep = o->report ? o->report : &own, .out = o->json ? stderr : stdout};
	if (!o->report)
		memset(&own, 0, sizeof(own));
	atomic_store(&C.rep->pid, (int)getpid());
	int ret = 1;
	struct sv2shm_client *client = NULL;
	struct sv2shm_consumer *cons = NULL;
	if (o->hold_ms) {
		C.q = calloc(HOLD_MAX, sizeof(*C.q));
		if (!C.q) {
			cli_fail(CMD, -ENOMEM, "hold queue");
			goto out;
		}
	}
	if (cli_connect(CMD, o->socket, &client) < 0)
		goto out;
	int r = sv2shm_client_subscribe(client, o->pool, NULL, o->subscribe_timeout_ms, &cons);
	if (r < 0) {
		switch (r) {
		case -ENOENT:
			cli_fail(CMD, r, "no pool named %s (sv2shm status lists them)", o->pool);
			break;
		case -EACCES:
			cli_fail(CMD, r, "the producer of %s does not allow our uid/gid (its --allow-uid/--allow-gid)", o->pool);
			break;
		case -EMFILE:
			cli_fail(CMD, r, "pool %s has its 31 consumers already", o->pool);
			break;
		default:
			cli_fail(CMD, r, "cannot subscribe to %s", o->pool);
			break;
		}
		goto close;
	}
	atomic_store(&C.rep->holder, sv2shm_consumer_id(cons));
	atomic_store(&C.rep->subscribed, 1);

	const char *ended = "interrupted";
	bool fatal = false;
	uint64_t last_frame = cli_now_ns(), last_client = last_frame;
	for (;;) {
		if (cli_stop)
			break;
		if (o->count && atomic_load(&C.rep->received) >= o->count) {
			ended = "count reached";
			break;
		}
		uint64_t now = cli_now_ns();
		release_due(&C, now);
		int64_t wait_ms = RECV_SLICE_MS;
		if (C.q_len) {
			uint64_t due = C.q[C.q_head].due_ns;
			int64_t until = due > now ? (int64_t)((due - now + 999999u) / 1000000u) : 0;
			if (until < wait_ms)
				wait_ms = until;
		}
		if (o->timeout_ms >= 0) {
			int64_t left = o->timeout_ms - (int64_t)((now - last_frame) / 1000000u);
			if (left <= 0) {
				ended = "timeout";
				break;
			}
			if (left < wait_ms)
				wait_ms = left;
		}
		struct sv2shm_slice s;
		r = sv2shm_consumer_recv(cons, &s, (int)wait_ms);
		if (r == 1) {
			handle_frame(&C, &s);
			last_frame = cli_now_ns();
			continue;
		}
		if (r == 0) {
			if (now - last_client > 100000000u) { /* "pool gone" messages, reconnects */
				sv2shm_client_process(client);
				last_client = now;
			}
			continue;
		}
		if (r == -EPIPE) {
			ended = "producer gone";
			break;
		}
		if (r == -EPROTO) {
			atomic_fetch_add(&C.rep->skipped_errors, 1);
			complain(&C, "the channel from the producer is broken (%s): hanging up", sv2shm_strerror(r));
			continue; /* the next recv says -EPIPE */
		}
		if (skippable(r)) {
			atomic_fetch_add(&C.rep->skipped_errors, 1);
			complain(&C, "a bad descriptor or message was skipped: %s", sv2shm_strerror(r));
			continue;
		}
		cli_fail(CMD, r, "receiving");
		ended = "error";
		fatal = true;
		break;
	}
	while (C.q_len)
		release_oldest(&C);
	atomic_store(&C.rep->missed, sv2shm_consumer_missed(cons));
	const struct consume_report *R = C.rep;
	fflush(C.out);
	if (!o->no_summary)
		cli_note(CMD, "%s: received %" PRIu64 " frames, %" PRIu64 " bytes; %s%" PRIu64 " verified, %" PRIu64
		      " corrupt, %" PRIu64 " gaps; %" PRIu64 " missed; %" PRIu64 " skipped errors; ended: %s",
		 o->pool, atomic_load(&R->received), atomic_load(&R->bytes), o->checksum ? "" : "(no --checksum) ",
		 atomic_load(&R->verified), atomic_load(&R->corrupt), atomic_load(&R->gaps), atomic_load(&R->missed),
		 atomic_load(&R->skipped_errors), ended);
	if (o->json)
		printf("{\"received\": %" PRIu64 ", \"verified\": %" PRIu64 ", \"corrupt\": %" PRIu64 ", \"missed\": %" PRIu64
		       ", \"bytes\": %" PRIu64 "}\n",
		       atomic_load(&R->received), atomic_load(&R->verified), atomic_load(&R->corrupt),
		       atomic_load(&R->missed), atomic_load(&R->bytes));
	ret = fatal || atomic_load(&R->corrupt) ? 1 : 0;
	r = sv2shm_consumer_free(cons);
	if (r < 0)
		ret = cli_fail(CMD, r, "freeing the consumer");
close:
	sv2shm_client_close(client);
out:
	free(C.q);
	atomic_store(&C.rep->finished, 1);
	if (fflush(stdout) != 0)
		ret = 1;
	return ret;
}

static void consume_usage(FILE *f)
{
	fprintf(f,
		"usage: sv2shm consume --pool NAME [OPTIONS]\n\n"
		"Subscribe to pool NAME and receive its frames in place until the producer is gone.\n\n"
		"  --pool NAME      the pool (required)\n"
		"  --count N        stop after N frames\n"
		"  --checksum       check synthetic frames (produce --synthetic): checksum, sequence order\n"
		"  --hold-ms MS     keep each frame MS ms before releasing it (others arrive meanwhile)\n"
		"  --hexdump        print each frame in hex (as hexdump -C -v)\n"
		"  --json           end with one JSON line on stdout:\n"
		"                   {\"received\", \"verified\", \"corrupt\", \"missed\", \"bytes\"}\n"
		"                   (per-frame output goes to stderr)\n"
		"  --timeout MS     stop after MS ms without a frame (default: wait for the producer)\n"
		"  --quiet          nothing per frame\n"
		"  --socket PATH    the broker's socket (default: %s)\n"
		"  --help           this text\n"
		"Exit status 1 if any frame was corrupt.\n",
		cli_default_socket());
}

int cmd_consume(int argc, char **argv)
{
	enum { O_SOCKET = 256, O_POOL, O_COUNT, O_CHECKSUM, O_HOLD, O_HEXDUMP, O_JSON, O_TIMEOUT, O_QUIET };
	static const struct option opts[] = {
		{"socket", required_argument, NULL, O_SOCKET},
		{"pool", required_argument, NULL, O_POOL},
		{"count", required_argument, NULL, O_COUNT},
		{"checksum", no_argument, NULL, O_CHECKSUM},
		{"hold-ms", required_argument, NULL, O_HOLD},
		{"hexdump", no_argument, NULL, O_HEXDUMP},
		{"json", no_argument, NULL, O_JSON},
		{"timeout", required_argument, NULL, O_TIMEOUT},
		{"quiet", no_argument, NULL, O_QUIET},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct consume_opts o = {.timeout_ms = -1, .subscribe_timeout_ms = -1};
	uint64_t v;
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
		case O_COUNT:
			if (cli_parse_u64(optarg, 1, UINT64_MAX, false, &o.count) < 0)
				return cli_usage_error(CMD, "--count takes a number of frames >= 1, not '%s'", optarg);
			break;
		case O_CHECKSUM:
			o.checksum = true;
			break;
		case O_HOLD:
			if (cli_parse_u64(optarg, 0, 3600000, false, &o.hold_ms) < 0)
				return cli_usage_error(CMD, "--hold-ms takes 0 .. 3600000, not '%s'", optarg);
			break;
		case O_HEXDUMP:
			o.hexdump = true;
			break;
		case O_JSON:
			o.json = true;
			break;
		case O_TIMEOUT:
			if (cli_parse_u64(optarg, 1, INT32_MAX, false, &v) < 0)
				return cli_usage_error(CMD, "--timeout takes 1 .. %d ms, not '%s'", INT32_MAX, optarg);
			o.timeout_ms = (int64_t)v;
			break;
		case O_QUIET:
			o.quiet = true;
			break;
		case 'h':
			consume_usage(stdout);
			return 0;
		default:
			return cli_getopt_error(CMD, c, argv, optind);
		}
	}
	if (optind < argc)
		return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
	if (!o.pool)
		return cli_usage_error(CMD, "--pool NAME is required");
	if (o.quiet && o.hexdump)
		return cli_usage_error(CMD, "--quiet and --hexdump contradict each other");
	cli_catch_signals();
	return consume_run(&o);
}
