"""C-stack heavy: json.dumps of a deep structure, the secret at the bottom."""

import json

NEEDS = ("heap", "c_stack")

DEPTH = 500


def work(ctx):
    obj = {"password": ctx.read_text()}
    for i in range(DEPTH):
        obj = [obj, {"level": i}]
    return len(json.dumps(obj))
