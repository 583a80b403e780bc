"""Consumers of the change journal inside the daemon: the snapshot merger and the cache invalidator.

Each one applies the journal's track events in a transaction that also moves its own cursor (a
row of `cursors`), so after any crash it resumes exactly where it stopped: nothing is applied
twice and nothing is lost. Programs outside follow the same journal with the same kind of cursor.
"""
