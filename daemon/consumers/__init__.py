"""Long-running consumers: one plain async function per module, each on its own receive stream.

They stop by themselves when their stream's send side is closed, after applying everything
already queued: that is how the daemon drains on shutdown.
"""
