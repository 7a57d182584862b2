"""Schemathesis hooks of scripts/fuzz-api (named by scripts/schemathesis.toml).

Most generated submits name a kind the server does not have, so few are
accepted, and the stateful phase rarely gets a task id to follow along the
document's links (to end the task, or to cancel it while it waits in the
queue). Three generated submits in four are made realistic here: a kind the
reference server has, 1 or 2 items, sent with `queue`, so that submits fill
the slots and wait behind them; the fourth is left as generated, for the
server's refusals. Which submits are changed depends only on the generated
body, and the fresh request ids are numbered in the order of the calls, so
a run stays reproducible with its seed.
"""
import itertools

import schemathesis

KINDS = ("image", "video")
# A new request each time: a repeated client_request_id answers as its
# first submit did (a task long ended), which no link can cancel.
FRESH = itertools.count(1)


@schemathesis.hook
def map_body(ctx, body):
    op = ctx.operation
    if op is None or op.method.upper() != "POST" or op.path != "/api/generations" or not isinstance(body, dict):
        return body
    rid = body.get("client_request_id")
    if not isinstance(rid, str) or len(rid) % 4 == 0:
        return body
    # Only what is valid is changed, into what is valid: a body generated
    # to break the schema (a negative case) keeps what breaks it.
    kind, count, queue = body.get("kind"), body.get("count"), body.get("queue", False)
    if not isinstance(kind, str) or type(count) is not int or not 1 <= count <= 16 or type(queue) is not bool:
        return body
    body = dict(body)
    body["kind"] = KINDS[len(rid) % 2]
    body["count"] = count % 2 + 1
    body["queue"] = True
    if len(rid) <= 180:
        body["client_request_id"] = f"{rid}-{next(FRESH)}"
    return body
