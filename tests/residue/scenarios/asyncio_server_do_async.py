"""asyncio: a streams server on loopback whose handler runs through
do_async(): it reads a key from a file, awaits a second task and a pipe,
verifies an HMAC-SHA256 token and answers (the loop itself runs outside
secret mode)."""

import asyncio
import hmac
import os

DERIVED = (("hmac", "sha256", b"GET /v1/orders"),)
CONTROL_FORMS = ("raw",)

MSG = b"GET /v1/orders"
REQUESTS = 3


async def sign(key, msg):
    # The second task: made in the handler's step, so each of its steps
    # runs in secret mode too.
    await asyncio.sleep(0)
    return hmac.new(key, msg, "sha256").digest()


async def handle(ctx, reader, writer, nonces):
    n = int.from_bytes(await reader.readexactly(2), "big")
    msg = await reader.readexactly(n)
    token = await reader.readexactly(32)
    key = ctx.read_secret()
    # The key sits far from the start of its buffer's copies (free-list
    # links written over a freed block's start must not be what hides it).
    key = bytes(64) + key + bytes(64)
    tag = await asyncio.create_task(sign(key, msg))
    nonce = await nonces.readexactly(8)
    ok = hmac.compare_digest(tag, token)
    writer.write(b"ok" if ok else b"no")
    writer.write(nonce)
    await writer.drain()
    writer.close()
    return ok


def main(ctx):
    protected = ctx.mode == "protected"
    if protected:
        import secret
        run = secret.do_async
    else:
        def run(f, *args):
            return f(*args)
    rfd, wfd = ctx.state["pipe"]
    answers = asyncio.run(serve(ctx, run, rfd, wfd))
    ctx.state["answers"] = len(answers)


async def serve(ctx, run, rfd, wfd):
    loop = asyncio.get_running_loop()
    nonces = asyncio.StreamReader()
    rpipe = os.fdopen(rfd, "rb", buffering=0)
    rtrans, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(nonces), rpipe)

    async def on_client(reader, writer):
        await run(handle, ctx, reader, writer, nonces)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    answers = []
    for i in range(REQUESTS):
        os.write(wfd, os.urandom(8))
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(len(MSG).to_bytes(2, "big") + MSG + os.urandom(32))
        await w.drain()
        answers.append(await r.read())
        w.close()
        await w.wait_closed()
    server.close()
    await server.wait_closed()
    rtrans.close()
    await asyncio.sleep(0)
    return answers


def setup(ctx):
    ctx.state["pipe"] = os.pipe()
