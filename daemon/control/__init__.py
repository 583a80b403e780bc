"""The control surface: JSON-RPC 2.0 over a Unix socket.

spec.py lists every method (its params model from params.py, its handler, its result, whether
it is cheap); protocol.py holds the message shapes and the error codes; server.py serves them
inside the daemon (connection.py one client, requests.py its request lines; the handlers are
methods.py's, program_methods.py's and subscriptions.py's `subscribe`). Clients live in
`daemon.client` and import none of it (they must start fast).
"""
