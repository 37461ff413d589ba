"""PyYAML with libyaml's C loader (yaml.CSafeLoader) reading a config.

libyaml's reader, scanner and token buffers come from the C library's
malloc (issue 23).
"""

import yaml

NEEDS = ("heap", "native_heap")
CONTROL_FORMS = ("raw",)
CONTROL_WHERE = ("heap",)


def work(ctx):
    doc = ("service: orders\ndatabase:\n  user: app\n  password: %s\n"
           "  host: db.internal\n  port: 5432\n" % ctx.read_text())
    cfg = yaml.load(doc, Loader=yaml.CSafeLoader)
    return len(cfg["database"]["password"])
