"""Clients for folders on other machines: what pulls fetch from and exports deliver to.

``sftp`` connects with the server's host key pinned, never learned. Every
way a connection can fail is a ``TransportError``, a ``TransientError``: the
caller retries later.
"""
