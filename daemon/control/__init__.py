"""The control surface: JSON-RPC 2.0 over a Unix socket.

protocol.py holds the message shapes, the parameter models and the error codes; server.py serves
them inside the daemon. Clients live in `daemon.client` and import neither (they must start fast).
"""
