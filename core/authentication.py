"""Station tokens: `Authorization: Token <token>`; only a SHA-256 of each token is stored."""

import hashlib
import secrets
import time

from django.conf import settings
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


# token hash -> (until when, station with its line): kept per process for
# STATION_AUTH_CACHE_SECONDS, as the deployments are. The lookup was 1 ms of CPU and 1.3 ms of
# a capture's wait; stations post several times a second.
_stations: dict[str, tuple[float, Station]] = {}
_STATIONS_KEPT = 10_000


def station_for_token(token: str) -> Station | None:
    """The active station with this token (and its line), or None. Unknown tokens are never
    kept: each is looked up again (the throttles bound how often)."""
    if not token:
        return None
    digest = token_hash(token)
    kept = _station_kept(digest)
    if kept is not None:
        return kept
    ttl = settings.STATION_AUTH_CACHE_SECONDS
    station = (
        Station.objects.select_related("line").filter(token_hash=digest, is_active=True).first()
    )
    if ttl > 0 and station is not None:
        if len(_stations) >= _STATIONS_KEPT:
            _stations.clear()
        _stations[digest] = (time.monotonic() + ttl, station)
    return station


def _station_kept(digest: str) -> Station | None:
    if settings.STATION_AUTH_CACHE_SECONDS <= 0:
        return None
    kept = _stations.get(digest)
    return kept[1] if kept is not None and kept[0] > time.monotonic() else None


def station_kept(authorization: str) -> Station | None:
    """The station of an `Authorization: Token ...` header if this process found it by its
    token in the last STATION_AUTH_CACHE_SECONDS; never asks the database. For work started
    on a request's behalf before it is authenticated (which still happens, as for any
    request): a miss only means that work is not started early."""
    keyword, _, token = authorization.partition(" ")
    if keyword.lower() != StationTokenAuthentication.keyword.lower() or not token.strip():
        return None
    return _station_kept(token_hash(token.strip()))


def stations_forget() -> None:
    """Look every token up again (after a station was disabled or its token rotated here)."""
    _stations.clear()


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
