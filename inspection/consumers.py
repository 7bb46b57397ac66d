"""Websocket consumers: a station's verdicts, and a line's live feed for inspectors."""

import asyncio
import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.authentication import station_for_token
from core.models import ProductionLine
from core.roles import INSPECTING, user_has_role
from core.selectors import line_is_visible
from inspection import events

# Close codes (4000-4999 are the application's): the client can tell why it was refused.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


AUTH_TIMEOUT_SECONDS = 10


def _header_token(scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            parts = value.decode(errors="replace").split()
            if len(parts) == 2 and parts[0].lower() == "token":
                return parts[1]
    return ""


def _token_in_url(scope) -> bool:
    return "token" in parse_qs(scope.get("query_string", b"").decode())


class StationConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/stations/<id>/`: every decision on the station's captures, as made.

    The station authenticates with an `Authorization: Token <token>` header, or (where its
    websocket library cannot set headers, as in a browser) with a first message
    `{"type": "auth", "token": "<token>"}` within AUTH_TIMEOUT_SECONDS. A token in the URL is
    refused: URLs end up in proxy and server logs.
    """

    station = None

    async def connect(self) -> None:
        await self.accept()
        if _token_in_url(self.scope):
            await self._refuse(
                CLOSE_UNAUTHENTICATED,
                "A token in the URL is refused (URLs are logged): send the header "
                "'Authorization: Token <token>' or a first message "
                '{"type": "auth", "token": "<token>"}.',
            )
            return
        token = _header_token(self.scope)
        if token:
            await self._authenticate(token)
            return
        self._auth_timer = asyncio.create_task(self._auth_deadline())

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(AUTH_TIMEOUT_SECONDS)
        if self.station is None:
            await self._refuse(CLOSE_UNAUTHENTICATED, "No authentication within the time allowed.")

    async def _refuse(self, code: int, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})
        await self.close(code=code)

    async def _authenticate(self, token: str) -> None:
        station = await database_sync_to_async(station_for_token)(token)
        station_id = self.scope["url_route"]["kwargs"]["station_id"]
        if station is None:
            await self._refuse(CLOSE_UNAUTHENTICATED, "Unknown or disabled station token.")
            return
        if station.pk != station_id:
            await self._refuse(CLOSE_FORBIDDEN, "This token belongs to another station.")
            return
        self.station = station
        self.group = events.station_group(station.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "hello", "station": station.pk, "line": station.line.code})

    async def receive_json(self, content, **kwargs) -> None:
        if self.station is not None:
            return  # nothing else is expected from a station
        if isinstance(content, dict) and content.get("type") == "auth":
            token = content.get("token")
            await self._authenticate(token if isinstance(token, str) else "")
            return
        await self._refuse(
            CLOSE_UNAUTHENTICATED, 'The first message must be {"type": "auth", "token": ...}.'
        )

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        content = None
        if text_data:
            try:
                content = json.loads(text_data)
            except ValueError:
                content = None  # not JSON: refused below as an unexpected first message
        await self.receive_json(content)

    async def disconnect(self, code: int) -> None:
        timer = getattr(self, "_auth_timer", None)
        if timer is not None:
            timer.cancel()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def decision_made(self, event: dict) -> None:
        await self.send_json({"type": "decision", "capture": event["capture"]})

    async def decision_reverted(self, event: dict) -> None:
        # The inspector undid the verdict within the undo window: the capture is pending again.
        await self.send_json({"type": "correction", "capture": event["capture"]})


def _line_id(code: str) -> int | None:
    return ProductionLine.objects.filter(code=code).values_list("pk", flat=True).first()


def _may_watch(user) -> bool:
    return user_has_role(user, *INSPECTING)


def _may_watch_line(user, line_id: int) -> bool:
    return line_is_visible(user, line_id)


class LineConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/lines/<code>/`: new captures and decisions on a line, for logged-in inspectors."""

    async def connect(self) -> None:
        code = self.scope["url_route"]["kwargs"]["line_code"]
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(_may_watch)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        line_id = await database_sync_to_async(_line_id)(code)
        if line_id is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if not await database_sync_to_async(_may_watch_line)(user, line_id):
            await self.close(code=CLOSE_FORBIDDEN)  # not one of this inspector's lines
            return
        self.group = events.line_group(code)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "hello", "line": code})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def capture_created(self, event: dict) -> None:
        await self.send_json({"type": "capture", "capture": event["capture"]})

    async def decision_made(self, event: dict) -> None:
        await self.send_json({"type": "decision", "capture": event["capture"]})

    async def capture_claimed(self, event: dict) -> None:
        await self.send_json(
            {
                "type": "claimed",
                "capture": event["capture"],
                "claimed_by": event["claimed_by"],
                "claim_expires_at": event["claim_expires_at"],
            }
        )

    async def capture_released(self, event: dict) -> None:
        await self.send_json({"type": "released", "capture": event["capture"]})

    async def decision_reverted(self, event: dict) -> None:
        await self.send_json({"type": "reverted", "capture": event["capture"]})

    async def line_changed(self, event: dict) -> None:
        await self.send_json({"type": "line", "line": event["line"], "changes": event["changes"]})
