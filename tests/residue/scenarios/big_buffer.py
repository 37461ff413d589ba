"""A 1 MiB buffer: the secret in 1 MiB request payloads, copied, searched."""

CONTROL_WHERE = ("heap",)

SIZE = 1 << 20
CACHE = []      # a response cache the server keeps (no secret in it)


def handle(key, n):
    payload = bytearray(SIZE)
    payload[SIZE // 2:SIZE // 2 + len(key)] = key
    # The cached response is allocated after the payload, so it sits above
    # it in the heap: once the payload is freed glibc cannot give those
    # pages back to the kernel (it only trims the top of the heap).
    CACHE.append(bytes(100 * 1024) + b"response %d" % n)
    copy = bytes(payload)
    del payload
    return copy.find(key)


def work(ctx):
    key = ctx.read_secret()
    # The first 1 MiB blocks are mmap'd and unmapped when freed; glibc
    # then raises its mmap threshold, so later requests' buffers come
    # from the heap.
    return sum(handle(key, n) for n in range(3))
