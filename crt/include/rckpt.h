/* rckpt.h: the checkpoint API of a program relinked with `rckpt compile`.
 *
 * HTCondor's standard-universe library let a program checkpoint itself;
 * these are its names. `rckpt compile` adds -I<runtime dir>, so
 * `#include <rckpt.h>` needs no other flag (the header is installed next to
 * librckpt_crt.a by `cargo build`). The functions live in librckpt_crt.a:
 * a program that calls them must be linked with `rckpt compile`.
 *
 * Checkpoint signals, for comparison: SIGTSTP checkpoints and exits (by
 * SIGUSR2), SIGUSR2 checkpoints and continues. The calls below take the same
 * paths, on the calling thread, so a restart resumes right after the call.
 *
 * Not async-signal-safe: ckpt() and ckpt_and_exit() flush stdio first
 * (fflush(NULL), so that output printed before the checkpoint is not
 * printed again by a restart). From a signal handler, raise(SIGUSR2) or
 * raise(SIGTSTP) instead.
 *
 * The names are weak symbols: a program that defines one of them itself
 * (its own `ckpt`, say) keeps its definition and links as it did before.
 *
 * Fortran (gfortran appends one underscore and passes a string's length as
 * a hidden argument): `call ckpt()` (or `integer, external :: ckpt` and
 * `r = ckpt()`), `call ckpt_and_exit()`, `call init_image_with_file_name(name)`
 * (trailing blanks are ignored), `call condor_ckpt_disable()` and
 * `call condor_ckpt_enable()` (a Fortran name cannot start with `_`).
 */
#ifndef RCKPT_H
#define RCKPT_H

#ifdef __cplusplus
extern "C" {
#endif

/* Checkpoint and continue, synchronously: returns once the image is
 * written (the image is taken by a forked copy of the process, as for
 * SIGUSR2, and this call waits for that copy to finish).
 *
 * Returns  0: the checkpoint was written;
 *         -1: it failed: one line on stderr says why, the previous
 *             checkpoint is kept, the program goes on;
 *          1: the program is resuming from a restart of that checkpoint
 *             (like setjmp, the same call returns twice).
 *
 * Inside a disabled section (below) it checkpoints anyway: the program asked
 * for it explicitly. The checkpoint signals are taken even if the program
 * blocks them. */
int ckpt(void);

/* Checkpoint and exit, as SIGTSTP does: after the image is written the
 * process dies by SIGUSR2 (HTCondor's "checkpointed" exit). If the
 * checkpoint fails it returns (the line on stderr says why) and the program
 * goes on. A restart of the image returns from this call and the program
 * continues after it. Like ckpt(), it also works inside a disabled section. */
void ckpt_and_exit(void);

/* Checkpoint to `name` from now on (relative names are resolved against the
 * working directory at the call, like -_condor_ckpt). A NULL, empty or too
 * long name prints one line on stderr and changes nothing. */
void init_image_with_file_name(const char *name);

/* Critical sections: while the count of _condor_ckpt_disable() calls not yet
 * matched by _condor_ckpt_enable() is above 0, a SIGTSTP or SIGUSR2 is not
 * taken but remembered (both: SIGTSTP wins) and taken when the outermost
 * enable brings the count back to 0, inside that call: a restart resumes
 * after it. Pairs nest; an enable without a disable is ignored. The count
 * is part of the checkpoint (ckpt() inside a section resumes inside it). */
void _condor_ckpt_disable(void);
void _condor_ckpt_enable(void);

#ifdef __cplusplus
}
#endif

#endif /* RCKPT_H */
