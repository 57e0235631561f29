/* counter.c: the rckpt demo program.
 *
 * Counts from 1 to STEPS (default 20, or the first argument), printing a
 * running sum of squares, with a short sleep per step so you can watch it.
 * Relink it with `rckpt compile cc -O2 -o counter counter.c`, stop it with
 * Ctrl-Z (SIGTSTP writes counter.ckpt) and restart it with
 * `./counter -_condor_restart counter.ckpt`: it carries on where it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void nap(long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&t, &t) == -1 && errno == EINTR)
        ; /* a signal (e.g. a checkpoint) woke us: sleep the rest */
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 20;
    unsigned long long sum = 0;

    setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, even into a pipe */
    for (long i = 1; i <= steps; i++) {
        sum += (unsigned long long)i * i;
        printf("step %ld of %ld: sum of squares = %llu\n", i, steps, sum);
        nap(200);
    }
    printf("done: sum of squares 1..%ld = %llu\n", steps, sum);
    return 0;
}
