/*
 * The fuzz targets without libFuzzer: every file under fuzz/corpus/<target>/
 * (the seed corpora) and fuzz/regress/<target>/ (inputs that once crashed a
 * target, kept so the bug stays fixed) goes through the same entry function
 * the fuzzer calls, sv2shm_fuzz_<target>() in fuzz/target_<target>.c. A
 * broken property aborts the process, naming the target and the file.
 *
 * One cmocka test per target. A target's corpus directory must hold at least
 * one input; its regress directory may be missing or empty.
 *
 * Environment:
 *   SV2SHM_FUZZ_DIR  the fuzz/ directory (default: the one of this source tree)
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "../fuzz/targets.h"

#ifndef SV2SHM_FUZZ_DIR
#error "define SV2SHM_FUZZ_DIR as the path of the fuzz/ directory"
#endif

static const char *fuzz_dir(void)
{
	const char *d = getenv("SV2SHM_FUZZ_DIR");
	return d && *d ? d : SV2SHM_FUZZ_DIR;
}

static int skip_dot(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

/* Run every regular file of fuzz/<sub>/<target>/; returns how many, or -1
 * when the directory does not exist. */
static int run_dir(const char *sub, const char *target, int (*fn)(const uint8_t *, size_t))
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/%s/%s", fuzz_dir(), sub, target);
	struct dirent **names;
	int n = scandir(dir, &names, skip_dot, alphasort);
	if (n < 0) {
		assert_int_equal(errno, ENOENT);
		return -1;
	}
	int ran = 0;
	for (int i = 0; i < n; i++) {
		char path[8192];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		free(names[i]);
		struct stat st;
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		FILE *f = fopen(path, "rb");
		assert_non_null(f);
		uint8_t *data = malloc((size_t)st.st_size + 1u);
		assert_non_null(data);
		size_t size = fread(data, 1, (size_t)st.st_size, f);
		fclose(f);
		assert_int_equal(size, (size_t)st.st_size);
		/* Say which input is running: a broken property aborts. */
		fprintf(stderr, "[ fuzz_regress ] %s: %s/%s (%zu bytes)\n", target, sub, path + strlen(dir) + 1, size);
		fflush(stderr);
		assert_int_equal(fn(data, size), 0);
		free(data);
		ran++;
	}
	free(names);
	return ran;
}

static void run_target(const char *target, int (*fn)(const uint8_t *, size_t))
{
	int corpus = run_dir("corpus", target, fn);
	assert_true(corpus > 0); /* every target has a seed corpus */
	int regress = run_dir("regress", target, fn);
	fprintf(stderr, "[ fuzz_regress ] %s: %d corpus and %d regression inputs passed\n", target, corpus,
		regress < 0 ? 0 : regress);
}

static void test_faster(void **state)
{
	(void)state;
	run_target("faster", sv2shm_fuzz_faster);
}

static void test_slower(void **state)
{
	(void)state;
	run_target("slower", sv2shm_fuzz_slower);
}

static void test_cross_process(void **state)
{
	(void)state;
	run_target("cross_process", sv2shm_fuzz_cross_process);
}

static void test_descriptor(void **state)
{
	(void)state;
	run_target("descriptor", sv2shm_fuzz_descriptor);
}

static void test_frame_decoder(void **state)
{
	(void)state;
	run_target("frame_decoder", sv2shm_fuzz_frame_decoder);
}

static void test_protocol(void **state)
{
	(void)state;
	run_target("protocol", sv2shm_fuzz_protocol);
}

static void test_hostile(void **state)
{
	(void)state;
	run_target("hostile", sv2shm_fuzz_hostile);
}

int main(void)
{
	/* Fork the helper processes of cross_process and hostile while this
	 * one has one thread. */
	sv2shm_fuzz_cross_process_init();
	sv2shm_fuzz_hostile_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cross_process), cmocka_unit_test(test_descriptor),
		cmocka_unit_test(test_frame_decoder), cmocka_unit_test(test_faster),
		cmocka_unit_test(test_slower), cmocka_unit_test(test_protocol),
		/* Last: a broken property aborts the whole runner. */
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
