/* runtimesecret experiment: the core's entry points.
 *
 * Upstream files call these at hook points (patches/); the erasure of
 * spec §3 (registers, C stack, frame stack, heap) plugs in behind them.
 * Only compiled when configure --with-experiment=runtimesecret.
 */
#ifndef Py_SECRET_CORE_H
#define Py_SECRET_CORE_H

#ifndef Py_BUILD_CORE
#  error "this header requires Py_BUILD_CORE define"
#endif

#include "pycore_tstate.h"        // _PyThreadStateImpl

#ifdef __cplusplus
extern "C" {
#endif

/* Whether this build erases (spec §6): 0 means fallback mode, where
 * secret.do() only calls its function and secret mode is never entered. */
#ifdef Py_RUNTIMESECRET_SUPPORTED
#  define _PySecret_SUPPORTED 1
#else
#  define _PySecret_SUPPORTED 0
#endif

/* Is the thread of tstate in secret mode: inside secret.do() at any depth,
 * or started by a thread that was? */
static inline int
_PySecret_IsEnabled(PyThreadState *tstate)
{
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)tstate;
    return ts->secret.depth > 0 || ts->secret.inherited;
}

/* Enter secret mode for one secret.do() call on tstate's thread.
 * Returns 1 if entered (the caller must call _PySecret_Leave() on every way
 * out), 0 in fallback mode (nothing to leave). Never fails. */
extern int _PySecret_Enter(PyThreadState *tstate);

/* Leave the secret mode entered by the matching _PySecret_Enter() call and
 * erase what that call's function left. Keeps a pending exception intact. */
extern void _PySecret_Leave(PyThreadState *tstate);

/* Thread life cycle (Modules/_threadmodule.c). */

/* In the parent, when the child's thread state is made: a thread created in
 * secret mode inherits it for its whole life (spec §2). */
extern void _PySecret_ThreadCreated(PyThreadState *parent,
                                    PyThreadState *child);
/* In the new thread, once it holds its thread state, before it runs code. */
extern void _PySecret_ThreadStart(PyThreadState *tstate);
/* In the ending thread, after its thread state is deleted: the last thing
 * before the thread returns to the OS. */
extern void _PySecret_ThreadExit(void);

#ifdef __cplusplus
}
#endif
#endif  /* !Py_SECRET_CORE_H */
