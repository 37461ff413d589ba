"""A DSN with the password split by urllib.parse.urlsplit (an lru_cache)."""

import urllib.parse

NEEDS = ("heap", "caches")
CONTROL_FORMS = ("raw",)


def work(ctx):
    password = ctx.read_text()
    dsn = "postgresql://app:%s@db.internal:5432/orders" % password
    parts = urllib.parse.urlsplit(dsn)
    return len(parts.password)
