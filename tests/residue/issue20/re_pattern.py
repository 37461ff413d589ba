"""A regular expression built from the secret (re's pattern caches)."""

import re

NEEDS = ("heap", "caches")
CONTROL_FORMS = ("raw",)


def work(ctx):
    token = ctx.read_text()
    log = "auth ok for %s from 10.0.0.1\n" % token
    m = re.search(re.escape(token) + r" from (\S+)", log)
    return len(m.group(1))
