/* libFuzzer entry points of the `cross_process` target
 * (target_cross_process.c). The helper process that forks the consumers is
 * started in LLVMFuzzerInitialize, before libFuzzer starts any thread. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sv2shm_fuzz_cross_process_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return sv2shm_fuzz_cross_process(data, size);
}
