"""The request path, in one place: prepare (``request``), run (``run``: the only retry loop),
drive (``drive``, ``stream``) and finish (``finish``). See ``run``'s docstring for where a
new rule goes."""
