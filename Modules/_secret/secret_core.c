/* runtimesecret experiment: secret mode, per thread.
 *
 * A thread is in secret mode while it runs inside secret.do() (a nesting
 * counter in its thread state) or for its whole life when it was started by
 * a thread in secret mode (spec §2). The erasure of spec §3 hooks into
 * _PySecret_Leave() and _PySecret_ThreadExit(); see README's status table for
 * what is erased today.
 */

#include "Python.h"
#include "pycore_pystate.h"       // _PyThreadState_GET()

#include "secret_core.h"

/* A thread started in secret mode. Thread-local, not in the thread state:
 * _PySecret_ThreadExit() runs after the thread state has been deleted. */
static _Py_thread_local int thread_is_secret;

int
_PySecret_Enter(PyThreadState *tstate)
{
#if _PySecret_SUPPORTED
    ((_PyThreadStateImpl *)tstate)->secret.depth++;
    return 1;
#else
    (void)tstate;
    return 0;
#endif
}

void
_PySecret_Leave(PyThreadState *tstate)
{
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)tstate;
    assert(ts->secret.depth > 0);
    ts->secret.depth--;
    /* Erasure at each do() exit (spec §3.1-§3.4) plugs in here. It must keep
     * a pending exception intact and never run Python code. */
}

void
_PySecret_ThreadCreated(PyThreadState *parent, PyThreadState *child)
{
    if (_PySecret_SUPPORTED && parent != NULL && _PySecret_IsEnabled(parent)) {
        ((_PyThreadStateImpl *)child)->secret.inherited = 1;
    }
}

void
_PySecret_ThreadStart(PyThreadState *tstate)
{
    thread_is_secret = ((_PyThreadStateImpl *)tstate)->secret.inherited;
}

void
_PySecret_ThreadExit(void)
{
    if (!thread_is_secret) {
        return;
    }
    thread_is_secret = 0;
    /* Erasure of the ending thread's stack and registers (spec §2, §3.1,
     * §3.2) plugs in here. */
}
