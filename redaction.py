"""Masking the API key in everything a person or a graph can read.

One rule for every log line, error, status message and config dump: a key is
masked where it could leak, and no other text is touched.
"""

from __future__ import annotations

import re

# A secret this long cannot occur in other text by chance: masked wherever it stands.
# A shorter one (a test key, a placeholder, a typo) could be part of an ordinary word
# ("k" in "key"), so it is masked only where it stands as a whole token, which is how
# a key leaks: a header value, a query value, a quoted config value, a vendor's echo.
_ANYWHERE_SECRET_LEN = 12
_TOKEN_CHARS = r"A-Za-z0-9_\-"


def redact(text: str, *secrets: str | None) -> str:
    """Mask each non-empty secret where it could leak, without mangling other text."""
    for secret in secrets:
        if not secret or secret not in text:
            continue
        if len(secret) >= _ANYWHERE_SECRET_LEN:
            text = text.replace(secret, mask_secret(secret))
        else:
            whole_token = rf"(?<![{_TOKEN_CHARS}]){re.escape(secret)}(?![{_TOKEN_CHARS}])"
            text = re.sub(whole_token, mask_secret(secret), text)
    return text


def mask_secret(secret: str | None) -> str:
    """Enough to tell two keys apart in a log, never enough to use one."""
    if not secret:
        return ""
    if len(secret) <= 8:
        return "***"
    return f"{secret[:2]}...{secret[-2:]}"
