"""SHA-256 of short texts (names, paths, config hashes) without loading OpenSSL.

`hashlib` loads OpenSSL's libcrypto on import (~4-6 ms here), which every command paid for
the few digests that name things (the run directory, bridges, veths, firewall tables,
config hashes). CPython's own `_sha256` module (~0.4 ms) gives the same digests; streaming
hashes of image content keep using hashlib.
"""

from __future__ import annotations

try:
    from _sha256 import sha256 as _sha256
except ImportError:  # not CPython's layout
    from hashlib import sha256 as _sha256


def hexdigest(data: bytes | str) -> str:
    """The hex SHA-256 of `data` (a str is UTF-8 encoded)."""
    return _sha256(data.encode() if isinstance(data, str) else data).hexdigest()
