"""Keep secrets out of text: presigned-URL signatures, tokens, client secrets."""

from __future__ import annotations

import re

# Query parameters that make a URL a credential. The path stays readable; only the values go.
_SECRET_PARAMS = re.compile(
    r"(?i)((?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|"
    r"access_token|token|client_secret|key)=)[^&#\s\"']+"
)
REDACTED = "[REDACTED]"


def redact_url(url: str) -> str:
    """``url`` with the values of signing parameters replaced by ``[REDACTED]``."""
    if "=" not in url:
        return url
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + REDACTED, url)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every given secret and every URL signature replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return redact_url(text)


class SecretHeaders(dict[str, str]):
    """Request headers whose repr hides ``Authorization`` (headers sit in tracebacks' locals)."""

    def __repr__(self) -> str:
        return repr({k: (REDACTED if k == "Authorization" else v) for k, v in self.items()})


class SecretForm(dict[str, str]):
    """A form whose repr hides ``client_secret`` (the OAuth token request's body)."""

    def __repr__(self) -> str:
        return repr({k: (REDACTED if k == "client_secret" else v) for k, v in self.items()})


class SignedURL(str):
    """A presigned URL whose repr hides its signature (URLs sit in tracebacks' locals)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_url(str(self)))
