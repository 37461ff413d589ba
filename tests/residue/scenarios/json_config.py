"""json.loads/dumps of a config holding a password."""

import json


def work(ctx):
    s = ctx.read_text()
    text = '{"db": {"user": "app", "password": "%s", "port": 5432}}' % s
    conf = json.loads(text)
    out = json.dumps(conf, indent=2, sort_keys=True)
    return len(out) + len(conf["db"]["password"])
