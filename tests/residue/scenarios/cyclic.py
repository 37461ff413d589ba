"""Cyclic garbage holding the secret: freed only by the cyclic GC."""


class Node:
    def __init__(self, value):
        self.value = value
        self.peer = None


def work(ctx):
    s = ctx.read_text()
    a, b = Node(s + ":a"), Node(":b" + s)
    a.peer, b.peer = b, a
    a.self = a
    return len(a.value) + len(b.value)
