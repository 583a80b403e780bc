"""The control surface: JSON-RPC 2.0 over a Unix socket.

spec.py lists every method (its params model from params.py, its result, whether it is cheap);
protocol.py holds the message shapes and the error codes; server.py serves them inside the
daemon (connection.py one client, subscriptions.py its event stream, methods.py and
program_methods.py the handlers). Clients live in `daemon.client` and import none of it (they
must start fast).
"""
