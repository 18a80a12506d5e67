/*
 * sv2shmd: options, the listening socket (or systemd's), daemonising,
 * logging; then server_run().
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sv2shm/client.h>

#include "broker_wire.h"
#include "log.h"
#include "server.h"

#ifndef SV2SHMD_VERSION
#error "SV2SHMD_VERSION comes from meson"
#endif

/* Enough fds for every limit at once: 1024 clients (socket + pidfd), 256
 * pools x 31 consumers (a pidfd each), pending subscriptions, spare. */
#define WANT_NOFILE 16384

enum { EXIT_USAGE = 2 };

struct options {
	const char *socket_path;
	bool foreground;
	int log_level;
	const char *group;
	bool no_io_uring;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: sv2shmd [OPTION]...\n"
		"The sv2shm broker: introduces producers of shared pools to their consumers,\n"
		"reclaims the slots of consumers that die, reports status.\n"
		"\n"
		"  -s, --socket PATH       listen on PATH (default: $XDG_RUNTIME_DIR/sv2shm/sv2shmd.sock,\n"
		"                          else /run/sv2shm/sv2shmd.sock)\n"
		"  -f, --foreground        stay in the foreground and log to stderr\n"
		"                          (default: daemonise and log to syslog)\n"
		"  -l, --log-level LEVEL   error, warn, info (default) or debug\n"
		"  -g, --group NAME        let group NAME connect (socket 0660, directory 0750;\n"
		"                          default: socket 0600, directory 0700)\n"
		"      --no-io-uring       use epoll instead of io_uring\n"
		"  -h, --help              show this and exit\n"
		"  -V, --version           show the version and exit\n"
		"\n"
		"Signals: SIGTERM, SIGINT shut down cleanly; SIGHUP is ignored.\n"
		"See sv2shmd(8).\n");
}

static int parse(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{"socket", required_argument, NULL, 's'},
		{"foreground", no_argument, NULL, 'f'},
		{"log-level", required_argument, NULL, 'l'},
		{"group", required_argument, NULL, 'g'},
		{"no-io-uring", no_argument, NULL, 'U'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":s:fl:g:hV", longs, NULL)) != -1) {
		switch (c) {
		case 's':
			o->socket_path = optarg;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'l':
			o->log_level = log_level_parse(optarg);
			if (o->log_level < 0) {
				fprintf(stderr, "sv2shmd: --log-level: '%s' is not one of error, warn, info, debug\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'g':
			o->group = optarg;
			break;
		case 'U':
			o->no_io_uring = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sv2shmd %s\n", SV2SHMD_VERSION);
			return 0;
		case ':':
			fprintf(stderr, "sv2shmd: option '%s' needs an argument\nTry 'sv2shmd --help'.\n",
				argv[optind - 1]);
			return EXIT_USAGE;
		default:
			if (optopt)
				fprintf(stderr, "sv2shmd: unknown option '-%c'\nTry 'sv2shmd --help'.\n", optopt);
			else
				fprintf(stderr, "sv2shmd: unknown option '%s'\nTry 'sv2shmd --help'.\n",
					argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "sv2shmd: unexpected argument '%s'\nTry 'sv2shmd --help'.\n", argv[optind]);
		return EXIT_USAGE;
	}
	return -1; /* go on */
}

/* Socket activation (sd_listen_fds): fd 3 when LISTEN_PID is us. Returns
 * the fd, -1 when not activated, -2 when the fd is not what we need. */
static int activated_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	if (!pid || !fds)
		return -1;
	char *end;
	long p = strtol(pid, &end, 10);
	if (*end || p != (long)getpid())
		return -1;
	long n = strtol(fds, &end, 10);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (*end || n < 1)
		return -1;
	if (n > 1)
		log_warn("socket activation: %ld sockets passed, using the first (fd 3)", n);
	int fd = 3, domain = 0, type = 0, acc = 0;
	socklen_t l = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) < 0 || domain != AF_UNIX ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_SEQPACKET ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 || !acc) {
		log_error("socket activation: fd 3 is not a listening AF_UNIX SOCK_SEQPACKET socket "
			  "(use ListenSequentialPacket= in the .socket unit)");
		return -2;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

/* Make the socket's directory when it is missing (0700, or 0750 and the
 * group). An existing directory is left as it is: it may be /tmp. */
static int make_dir(const char *path, gid_t gid, bool group)
{
	char copy[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(copy, sizeof(copy), "%s", path);
	const char *dir = dirname(copy);
	struct stat sb;
	if (stat(dir, &sb) == 0) {
		if (!S_ISDIR(sb.st_mode)) {
			log_error("%s is not a directory", dir);
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT || mkdir(dir, group ? 0750 : 0700) < 0) {
		log_error("cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (group && (chown(dir, (uid_t)-1, gid) < 0 || chmod(dir, 0750) < 0)) {
		log_error("cannot give %s to the group: %s", dir, strerror(errno));
		return -1;
	}
	log_info("created %s", dir);
	return 0;
}

/*
 * Is a broker listening at `sa`? 1 yes, 0 a stale socket, -1 error.
 *
 * A successful connect() is not enough: a listener killed a moment ago may
 * still hold its socket (an io_uring ring is torn down asynchronously, a few
 * ms after SIGKILL), and connections queue in its backlog until it goes.
 * So ask for STATUS: a broker answers; a vanishing listener resets us (then
 * look again); silence for a second means something holds the socket:
 * refuse, as for a live broker.
 */
static int socket_live(const struct sockaddr_un *sa)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
			int e = errno;
			close(fd);
			if (e == ECONNREFUSED)
				return 0;
			errno = e;
			return -1;
		}
		struct bmsg_status m;
		memset(&m, 0, sizeof(m));
		bmsg_init(&m.hdr, BOP_STATUS, 1);
		send(fd, &m, sizeof(m), MSG_DONTWAIT | MSG_NOSIGNAL);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, 1000);
		char buf[BMSG_MAX + 1];
		ssize_t n = r == 1 ? recv(fd, buf, sizeof(buf), MSG_DONTWAIT) : -1;
		close(fd);
		if (r == 0 || n > 0)
			return 1; /* an answer, or a listener that stays silent */
		usleep(10000); /* reset by a listener on its way out: look again */
	}
	return 1;
}

static int make_socket(const char *path, const char *group, struct stat *made, int *lock)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	gid_t gid = (gid_t)-1;
	if (group) {
		struct group *g = getgrnam(group);
		if (!g) {
			log_error("--group: no group named '%s'", group);
			return -EXIT_USAGE;
		}
		gid = g->gr_gid;
	}
	if (make_dir(path, gid, group != NULL) < 0)
		return -1;
	/* PATH.lock, held while we live (as Wayland's compositors do): two
	 * brokers started at once cannot both find the socket stale, remove
	 * it and bind, leaving one listening on a name nobody can reach. */
	char lockpath[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	snprintf(lockpath, sizeof(lockpath), "%s.lock", path);
	*lock = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, group ? 0640 : 0600);
	if (*lock < 0) {
		log_error("cannot open %s: %s", lockpath, strerror(errno));
		return -1;
	}
	if (flock(*lock, LOCK_EX | LOCK_NB) < 0) {
		log_error("another sv2shmd is starting or running on %s (%s is locked)", path, lockpath);
		close(*lock);
		*lock = -1;
		return -1;
	}
	struct stat sb;
	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			log_error("%s exists and is not a socket: not removing it", path);
			return -1;
		}
		int live = socket_live(&sa);
		if (live > 0) {
			log_error("another sv2shmd (or something else) is listening on %s", path);
			return -1;
		}
		if (live < 0) {
			log_error("cannot tell whether %s is in use: %s", path, strerror(errno));
			return -1;
		}
		log_info("replacing the stale socket %s", path);
		if (unlink(path) < 0 && errno != ENOENT) {
			log_error("cannot remove the stale socket %s: %s", path, strerror(errno));
			return -1;
		}
	}
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		log_error("socket: %s", strerror(errno));
		return -1;
	}
	/* Created 0600: the group gets in only after chown, never before. */
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	umask(old);
	if (r < 0) {
		log_error("cannot bind %s: %s%s", path, strerror(e),
			  e == EADDRINUSE ? " (another sv2shmd started at the same time?)" : "");
		close(fd);
		return -1;
	}
	if (group && (chown(path, (uid_t)-1, gid) < 0 || chmod(path, 0660) < 0)) {
		log_error("cannot give %s to group %s: %s", path, group, strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	if (listen(fd, SOMAXCONN) < 0) {
		log_error("listen: %s", strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	if (lstat(path, made) < 0)
		memset(made, 0, sizeof(*made));
	return fd;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= WANT_NOFILE)
		return;
	rlim_t want = rl.rlim_max < WANT_NOFILE ? rl.rlim_max : WANT_NOFILE;
	rl.rlim_cur = want;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (want < WANT_NOFILE)
		log_warn("open files limited to %llu (want %d for every limit at once)", (unsigned long long)want,
			 WANT_NOFILE);
}

/* fork, setsid, chdir /, stdio to /dev/null, and close every other fd we
 * inherited but the listening socket and the lock (a caller's pipe, say,
 * would wait for us to exit). */
static int daemonise(int keep1, int keep2)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	if (chdir("/") < 0)
		return -1;
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		return -1;
	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	dup2(null, STDERR_FILENO);
	if (null > STDERR_FILENO)
		close(null);
	int lo = keep1 < keep2 ? keep1 : keep2, hi = keep1 < keep2 ? keep2 : keep1;
	unsigned from = STDERR_FILENO + 1;
	if (lo > (int)from)
		close_range(from, (unsigned)lo - 1, 0);
	if (lo >= (int)from)
		from = (unsigned)lo + 1;
	if (hi > (int)from)
		close_range(from, (unsigned)hi - 1, 0);
	if (hi >= (int)from)
		from = (unsigned)hi + 1;
	close_range(from, ~0u, 0);
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = {.log_level = LVL_INFO};
	int r = parse(argc, argv, &o);
	if (r >= 0)
		return r;
	log_init((enum log_level)o.log_level, false);

	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd = activated_socket();
	bool activated = lfd >= 0;
	if (lfd == -2)
		return 1;
	struct stat made;
	memset(&made, 0, sizeof(made));
	int lock = -1;
	if (activated) {
		struct sockaddr_un sa;
		socklen_t sl = sizeof(sa);
		memset(&sa, 0, sizeof(sa));
		if (getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0 || !sa.sun_path[0])
			snprintf(path, sizeof(path), "(socket activation, fd 3)");
		else
			snprintf(path, sizeof(path), "%s", sa.sun_path);
		if (o.socket_path || o.group)
			log_warn("socket activation: --socket and --group are ignored");
		int fl = fcntl(lfd, F_GETFL);
		if (fl >= 0)
			fcntl(lfd, F_SETFL, fl | O_NONBLOCK);
	} else {
		int n;
		if (o.socket_path && o.socket_path[0] == '/') {
			n = snprintf(path, sizeof(path), "%s", o.socket_path);
		} else if (o.socket_path) {
			char cwd[PATH_MAX];
			if (!getcwd(cwd, sizeof(cwd))) {
				fprintf(stderr, "sv2shmd: getcwd: %s\n", strerror(errno));
				return 1;
			}
			n = snprintf(path, sizeof(path), "%s/%s", cwd, o.socket_path);
		} else {
			n = sv2shm_default_socket(path, sizeof(path)) < 0 ? -1 : (int)strlen(path);
		}
		if (n < 0 || (size_t)n >= sizeof(path) || (o.socket_path && !o.socket_path[0])) {
			fprintf(stderr, "sv2shmd: the socket path is empty or longer than %zu bytes\n",
				sizeof(path) - 1);
			return EXIT_USAGE;
		}
		lfd = make_socket(path, o.group, &made, &lock);
		if (lfd < 0)
			return lfd == -EXIT_USAGE ? EXIT_USAGE : 1;
	}
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);

	if (!o.foreground) {
		log_close();
		if (daemonise(lfd, lock) < 0) {
			log_error("cannot daemonise: %s", strerror(errno));
			if (!activated)
				unlink(path);
			return 1;
		}
		log_init((enum log_level)o.log_level, true);
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);

	struct server_config cfg = {
		.listen_fd = lfd,
		.socket_path = path,
		.version = SV2SHMD_VERSION,
		.try_io_uring = !o.no_io_uring,
	};
	int status = server_run(&cfg);

	close(lfd);
	if (!activated) {
		/* Only our own socket: a successor may have replaced it. */
		struct stat now;
		if (lstat(path, &now) == 0 && now.st_ino == made.st_ino && now.st_dev == made.st_dev)
			unlink(path);
	}
	if (lock >= 0)
		close(lock); /* the file stays: removing it would race with a successor */
	log_info("exiting (status %d)", status);
	log_close();
	return status;
}
