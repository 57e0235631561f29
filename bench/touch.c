/* touch.c: the benchmark workload for bench/run.sh (relinked with rckpt).
 *
 *   touch MIB SECONDS      map MIB MiB, write every byte (a pattern, not
 *                          zeros), so all of it is resident and distinct
 *   touch sparse SECONDS   map 8 GiB with MAP_NORESERVE, write 16 MiB of it
 *                          (16 chunks of 1 MiB, 512 MiB apart)
 *
 * Then prints "ready ..." and spins doing light work (a counter; it does not
 * write the big buffer) while measuring the largest gap between two loop
 * iterations with CLOCK_MONOTONIC, so the pause a SIGUSR2 checkpoint causes
 * is measured by the program itself. After SECONDS it prints
 * "max_gap_ms X iterations N" and exits 0.
 *
 * Restart detection: the loop compares getpid() with the pid it started
 * with. When they differ it has been restarted from a checkpoint: it prints
 * "resumed REALTIME" (CLOCK_REALTIME, seconds, so the driver can compute the
 * restart latency), checks every written byte ("verify ok" or
 * "verify FAILED ...") and exits (0 if intact, 3 if not).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024UL * 1024UL)

struct chunk { uint64_t *p; size_t words; };

static struct chunk chunks[1024];
static int nchunks;

static double now(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* The value of word i of chunk k: cheap, non-zero, different everywhere. */
static inline uint64_t pattern(int k, size_t i)
{
    return ((uint64_t)(k + 1) << 48) ^ (i * 0x9E3779B97F4A7C15ULL) ^ 0x5555555555555555ULL;
}

static void fill(void)
{
    for (int k = 0; k < nchunks; k++)
        for (size_t i = 0; i < chunks[k].words; i++)
            chunks[k].p[i] = pattern(k, i);
}

static int verify(void)
{
    for (int k = 0; k < nchunks; k++)
        for (size_t i = 0; i < chunks[k].words; i++)
            if (chunks[k].p[i] != pattern(k, i)) {
                printf("verify FAILED: chunk %d word %zu: %#llx, expected %#llx\n", k, i,
                       (unsigned long long)chunks[k].p[i], (unsigned long long)pattern(k, i));
                return 3;
            }
    printf("verify ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: touch MIB|sparse SECONDS\n");
        return 2;
    }
    double seconds = atof(argv[2]);
    size_t mapped, resident;

    if (strcmp(argv[1], "sparse") == 0) {
        mapped = 8192 * MIB;
        resident = 16 * MIB;
        char *m = mmap(NULL, mapped, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) { perror("mmap 8 GiB"); return 1; }
        for (int k = 0; k < 16; k++)
            chunks[nchunks++] = (struct chunk){ (uint64_t *)(m + k * 512 * MIB), MIB / 8 };
    } else {
        mapped = resident = strtoul(argv[1], NULL, 10) * MIB;
        char *m = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) { perror("mmap"); return 1; }
        chunks[nchunks++] = (struct chunk){ (uint64_t *)m, mapped / 8 };
    }
    fill();

    pid_t pid = getpid();
    printf("ready pid %d mapped_mib %zu resident_mib %zu\n", (int)pid, mapped / MIB, resident / MIB);
    fflush(stdout);

    volatile unsigned long counter = 0;
    double start = now(CLOCK_MONOTONIC), last = start, max_gap = 0;
    for (;;) {
        counter++;
        if (getpid() != pid) {
            printf("resumed %.6f\n", now(CLOCK_REALTIME));
            fflush(stdout);
            int rc = verify();
            fflush(stdout);
            return rc;
        }
        double t = now(CLOCK_MONOTONIC);
        if (t - last > max_gap)
            max_gap = t - last;
        last = t;
        if (t - start >= seconds)
            break;
    }
    printf("max_gap_ms %.3f iterations %lu\n", max_gap * 1e3, (unsigned long)counter);
    return 0;
}
