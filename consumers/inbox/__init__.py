"""The social worker's inbox: a web page and a case-management API over an LA's queue.

The receiving local authority's side of the exchange, beside the consumer that fills the
queue: it reads the queue with :mod:`consumers.reader` (the queue stays sealed at rest and
an item is opened only when a person or system reads it), decides who may see which rows
(:mod:`consumers.inbox.access`), records every read and onward share
(:mod:`consumers.inbox.store`), and serves both faces from one Starlette app
(:mod:`consumers.inbox.app`).
"""
