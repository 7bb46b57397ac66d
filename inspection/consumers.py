"""Websocket consumers: a station's verdicts, and a line's live feed for inspectors."""

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.authentication import station_for_token
from core.models import ProductionLine
from core.roles import INSPECTING, user_has_role
from inspection import events

# Close codes (4000-4999 are the application's): the client can tell why it was refused.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


def _scope_token(scope) -> str:
    query = parse_qs(scope.get("query_string", b"").decode())
    if query.get("token"):
        return query["token"][0]
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            parts = value.decode(errors="replace").split()
            if len(parts) == 2 and parts[0].lower() == "token":
                return parts[1]
    return ""


class StationConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/stations/<id>/?token=...`: every decision on the station's captures, as made."""

    async def connect(self) -> None:
        station_id = self.scope["url_route"]["kwargs"]["station_id"]
        station = await database_sync_to_async(station_for_token)(_scope_token(self.scope))
        await self.accept()
        if station is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if station.pk != station_id:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = events.station_group(station.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "hello", "station": station.pk, "line": station.line.code})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def decision_made(self, event: dict) -> None:
        await self.send_json({"type": "decision", "capture": event["capture"]})

    async def decision_reverted(self, event: dict) -> None:
        # The inspector undid the verdict within the undo window: the capture is pending again.
        await self.send_json({"type": "correction", "capture": event["capture"]})


def _line_exists(code: str) -> bool:
    return ProductionLine.objects.filter(code=code).exists()


def _may_watch(user) -> bool:
    return user_has_role(user, *INSPECTING)


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
        if not await database_sync_to_async(_line_exists)(code):
            await self.close(code=CLOSE_NOT_FOUND)
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
