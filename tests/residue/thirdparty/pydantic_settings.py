"""pydantic v2: validating a settings document that holds the password.

pydantic-core is Rust: its JSON parser decodes a string with escapes (the
DSN's quoted application name) into a buffer from the C library's malloc
(issue 23). cache_strings="keys": by default pydantic-core keeps every JSON
string of up to 64 characters it made (the password field) in a cache of
its own for the life of the process (docs/limitations.md).
"""

import json

from pydantic import BaseModel, ConfigDict

NEEDS = ("heap", "native_heap")
CONTROL_FORMS = ("raw",)
CONTROL_WHERE = ("heap",)


class Database(BaseModel):
    dsn: str
    password: str
    pool: int


class Settings(BaseModel):
    model_config = ConfigDict(cache_strings="keys")
    name: str
    database: Database


def work(ctx):
    password = ctx.read_text()
    dsn = ('postgresql://app:%s@db.internal:5432/orders'
           '?application_name="orders"' % password)
    doc = json.dumps({"name": "orders", "database": {
        "dsn": dsn, "password": password, "pool": 8}})
    settings = Settings.model_validate_json(doc)
    again = Settings.model_validate(json.loads(doc))
    return len(settings.database.dsn) + again.database.pool
