/* runtimesecret: what file objects do with secret data (spec §3.4, §3.5).
 *
 * Buffered I/O (Modules/_io/bufferedio.c) and text I/O (textio.c) call
 * these at the points where a buffer is filled, consumed, flushed or
 * seeked, and where encoded text is pending (the two _io patches); the
 * rules live here:
 *
 * - In secret mode, a buffer still in ordinary memory moves into the secret
 *   heap before a read or write uses it (_PySecretIO_MustAdopt, _Adopt):
 *   a secret byte never enters ordinary memory there.
 * - A secret buffer zeroes what it no longer needs: the bytes a read
 *   consumed (_PySecretIO_Consumed, at the end of each read), the read data
 *   a reset discards (_Discard), written bytes once flushed or shifted
 *   away (_Zero). So a seek never moves back inside a secret buffer
 *   (_PySecretIO_SeekBackOK): the raw stream serves it.
 * - Text whose encoded form is secret is flushed in secret mode, whenever
 *   the flush comes (_PySecretIO_EnterMode): the joined bytes and the
 *   buffer that takes them are secret too. A text reader without tell()
 *   drops a secret decoded chunk once it is read to its end
 *   (_PySecretIO_ChunkRead).
 *
 * The hooks call the zeroing functions only for a secret buffer, after one
 * address compare (bufferedio.c's SECRET_* macros test it first).
 * Without the secret heap (experiment off, fallback mode) every hook is a
 * constant the compiler drops: the off build is pristine's machine code.
 * Offsets are Py_ssize_t: they index a buffer of buffer_size bytes.
 */

#ifndef Py_SECRET_IO_H
#define Py_SECRET_IO_H

#include "pycore_pymem.h"         // _PySecret_InMode(), _PySecret_IsSecret()

#if _Py_SECRET_HEAP

/* 1 if a read or write now must first move buffer into the secret heap:
 * in secret mode, with a buffer still in ordinary memory. */
static inline int
_PySecretIO_MustAdopt(const char *buffer)
{
    return _PySecret_InMode() && buffer != NULL
           && !_PySecret_IsSecret(buffer);
}

/* Move *buffer (size bytes from PyMem_Malloc) into the secret heap: its
 * first `used` bytes are copied, the whole old block zeroed (what it held
 * before, too) and freed; nothing of the new one is zeroed yet (*zeroed =
 * 0, see _PySecretIO_Consumed). Called in secret mode, with no other
 * pointer into the buffer in use. 0, or -1 with the heap's MemoryError
 * (the buffer is then unchanged, and the read or write fails: its data
 * never goes to ordinary memory). */
static inline int
_PySecretIO_Adopt(char **buffer, Py_ssize_t *zeroed, Py_ssize_t size,
                  Py_ssize_t used)
{
    char *old = *buffer;
    if (old == NULL || _PySecret_IsSecret(old)) {
        return 0;
    }
    char *buf = PyMem_Malloc(size);     /* secret mode: the secret heap */
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    assert(_PySecret_IsSecret(buf));
    used = Py_MAX(0, Py_MIN(used, size));
    memcpy(buf, old, (size_t)used);
    explicit_bzero(old, (size_t)size);
    PyMem_Free(old);
    *buffer = buf;
    *zeroed = 0;
    return 0;
}

/* The bytes a read consumed, [*zeroed, pos) of a secret read buffer with
 * no write pending: zeroed now, and *zeroed moves to pos. They are never
 * read again (no seek back inside a secret buffer). `reading` says the
 * buffer holds read data and no pending write.
 * Called with or without the buffer's lock (the fast paths of a read run
 * without it), always under the GIL: a thread holding the lock uses the
 * buffer without the GIL only in raw I/O, which fills it at read_end or
 * after a reset, or writes out pending writes (then `reading` is 0):
 * never [*zeroed, pos). */
static inline void
_PySecretIO_Consumed(char *buffer, Py_ssize_t *zeroed, Py_ssize_t pos,
                     int reading)
{
    if (_PySecret_IsSecret(buffer) && reading && pos > *zeroed) {
        explicit_bzero(buffer + *zeroed, (size_t)(pos - *zeroed));
        *zeroed = pos;
    }
}

/* The buffer's read data is discarded (a refill, a seek, a flush): what is
 * left of it, [*zeroed, end), is zeroed, unless writes pending share the
 * buffer (then it stays, secret, until freed). The next fill starts at 0. */
static inline void
_PySecretIO_Discard(char *buffer, Py_ssize_t *zeroed, Py_ssize_t end,
                    int reading)
{
    if (_PySecret_IsSecret(buffer)) {
        if (reading && end > *zeroed) {
            explicit_bzero(buffer + *zeroed, (size_t)(end - *zeroed));
        }
        *zeroed = 0;
    }
}

/* Written bytes no longer needed, [start, end) of a secret buffer. */
static inline void
_PySecretIO_Zero(char *buffer, Py_ssize_t start, Py_ssize_t end)
{
    if (_PySecret_IsSecret(buffer) && end > start) {
        explicit_bzero(buffer + start, (size_t)(end - start));
    }
}

/* 1 if a seek by offset may stay inside the buffer: not backwards in a
 * secret buffer, whose consumed bytes are zeroed. */
static inline int
_PySecretIO_SeekBackOK(const char *buffer, Py_ssize_t offset)
{
    return offset >= 0 || !_PySecret_IsSecret(buffer);
}

/* Secret mode for a flush done outside do() on behalf of secret text; the
 * value to give _PySecretIO_RestoreMode(). (_io is built in: the
 * thread-local is the core's.) */
static inline int
_PySecretIO_EnterMode(void)
{
    return _PySecret_tls.mode++;
}

static inline void
_PySecretIO_RestoreMode(int mode)
{
    _PySecret_tls.mode = mode;
}

/* A text reader's decoded chunk *chars, of which *used characters are
 * read: once read to its end, a secret chunk is freed (hence zeroed) now
 * instead of at the next read. Not when telling: tell() decodes the
 * snapshot again up to *used. */
static inline void
_PySecretIO_ChunkRead(PyObject **chars, Py_ssize_t *used, int telling)
{
    if (!telling && *chars != NULL && _PySecret_IsSecret(*chars)
        && *used >= PyUnicode_GET_LENGTH(*chars))
    {
        Py_CLEAR(*chars);
        *used = 0;
    }
}

#else   /* !_Py_SECRET_HEAP: nothing to do, no code */

#  define _PySecretIO_MustAdopt(buffer) 0
#  define _PySecretIO_Zero(buffer, start, end) ((void)0)
#  define _PySecretIO_SeekBackOK(buffer, offset) 1
#  define _PySecretIO_ChunkRead(chars, used, telling) ((void)0)

#endif  /* _Py_SECRET_HEAP */

#endif  /* !Py_SECRET_IO_H */
