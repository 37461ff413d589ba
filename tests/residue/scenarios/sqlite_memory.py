"""sqlite3: the token stored in an in-memory database, queried, closed.

SQLite's pages, statements and result buffers come from the C library's
malloc (issue 23).
"""

import sqlite3

NEEDS = ("heap", "native_heap")
CONTROL_FORMS = ("raw",)
CONTROL_WHERE = ("heap",)


def work(ctx):
    token = ctx.read_text()
    db = sqlite3.connect(":memory:")
    db.execute("create table creds (name text, token text)")
    db.execute("insert into creds values (?, ?)", ("api", token))
    db.commit()
    n = db.execute("select count(*) from creds where token = ?",
                   (token,)).fetchone()[0]
    db.close()
    return n
