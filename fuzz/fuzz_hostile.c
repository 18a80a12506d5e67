/* libFuzzer entry points of the `hostile` target (target_hostile.c). The
 * helper process that forks the honest consumers is started in
 * LLVMFuzzerInitialize, before libFuzzer starts any thread. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sv2shm_fuzz_hostile_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return sv2shm_fuzz_hostile(data, size);
}
