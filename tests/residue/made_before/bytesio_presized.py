"""An io.BytesIO made before do() with room for 4 KiB (written, then
rewound) is written the secret in do(); it stays alive."""

import io

KEEP = []


def setup(ctx):
    b = io.BytesIO()
    b.write(bytes(4096))
    b.seek(0)
    KEEP.append(b)


def work(ctx):
    return KEEP[0].write(ctx.read_secret())
