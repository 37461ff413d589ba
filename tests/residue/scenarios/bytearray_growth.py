"""bytearray growth: append the key to a buffer again and again with +=."""

CONTROL_WHERE = ("heap",)
NEEDS = ("heap", "c_stack")


def work(ctx):
    key = ctx.read_secret()
    buf = bytearray()
    for i in range(400):
        buf += key
        buf += b"," + str(i).encode()
    return len(buf)
