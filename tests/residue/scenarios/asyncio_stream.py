"""asyncio: a whole event loop run in do(); a key read through a
StreamReader and used on an executor thread."""

import asyncio
import hmac
import os

DERIVED = (("hmac", "sha256", b"GET /v1/orders"),)
CONTROL_FORMS = ("raw",)

# Where the key sits in the request: far from the start of every buffer
# that holds it, so that an allocator's free-list links written over the
# start of a freed block cannot be what hides it in the control.
HEADER = b"SIGN /v1/orders HTTP/1.1\r\nContent-Type: key\r\n" + b"x" * 160
PAD = 4096


async def serve(ctx, rfd, wfd):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    rpipe = os.fdopen(rfd, "rb", buffering=0)
    wpipe = os.fdopen(wfd, "wb", buffering=0)
    rtrans, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), rpipe)
    wtrans, wproto = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, wpipe)
    writer = asyncio.StreamWriter(wtrans, wproto, None, loop)

    # The client: one request with a length-prefixed key in its body.
    key = ctx.read_secret()
    body = HEADER + len(key).to_bytes(2, "big") + key
    writer.write(body + b"\0" * (PAD - len(body)))
    await writer.drain()

    # The server: parse the request, sign on the default executor.
    await reader.readexactly(len(HEADER))
    n = int.from_bytes(await reader.readexactly(2), "big")
    got = await reader.readexactly(n)
    await reader.readexactly(PAD - len(HEADER) - 2 - n)
    tag = await loop.run_in_executor(
        None, lambda: hmac.new(got, b"GET /v1/orders", "sha256").digest())
    writer.close()
    rtrans.close()
    await asyncio.sleep(0)
    return len(tag)


def setup(ctx):
    ctx.state["pipe"] = os.pipe()


def work(ctx):
    rfd, wfd = ctx.state["pipe"]
    return asyncio.run(serve(ctx, rfd, wfd))
