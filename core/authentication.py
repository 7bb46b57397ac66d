"""Station tokens: `Authorization: Token <token>`; only a SHA-256 of each token is stored."""

import hashlib
import secrets

from rest_framework import authentication, exceptions

from core.models import Station


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_generate() -> str:
    """32 random bytes, URL-safe. Never starting with "-": a token is pasted after `--token` on
    command lines, where argparse would take one like "-Ns6f..." for an option (one token in
    64 did; the demo's simulated station failed to start with it)."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def station_for_token(token: str) -> Station | None:
    if not token:
        return None
    return (
        Station.objects.select_related("line")
        .filter(token_hash=token_hash(token), is_active=True)
        .first()
    )


class StationTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates a station; `request.user` and `request.auth` are then the Station."""

    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: use 'Token <station token>'."
            )
        try:
            token = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("The token has invalid characters.") from None
        station = station_for_token(token)
        if station is None:
            raise exceptions.AuthenticationFailed("Unknown or disabled station token.")
        return station, station

    def authenticate_header(self, request) -> str:
        return self.keyword
