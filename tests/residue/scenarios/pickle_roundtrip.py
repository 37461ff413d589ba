"""pickle: dumps and loads a record holding the secret."""

import pickle


def work(ctx):
    s = ctx.read_text()
    record = {"user": "app", "token": s, "raw": s.encode(), "n": [1, 2]}
    blob = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    again = pickle.loads(blob)
    return len(blob) + len(again["token"])
