"""regex: find the password in a config text with constant patterns."""

import re

PATTERN = re.compile(r"password\s*=\s*(\S+)")


def work(ctx):
    s = ctx.read_text()
    text = "[db]\nuser = app\npassword = %s\nport = 5432\n" % s
    m = PATTERN.search(text)
    found = m.group(1)
    parts = re.split(r"\s*=\s*", text)
    masked = re.sub(r"(?<=password = )\S+", "***", text)
    return len(found) + len(parts) + len(masked)
