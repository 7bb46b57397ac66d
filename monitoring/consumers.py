"""`/ws/monitoring/`: alerts as they open, escalate and close, for logged-in users who may see
the monitor pages (inspectors read, supervisors act)."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.roles import INSPECTING, user_has_role
from monitoring.services.alerts import MONITORING_GROUP

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class MonitoringConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(user_has_role)(user, *INSPECTING):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.joined = True
        await self.channel_layer.group_add(MONITORING_GROUP, self.channel_name)
        await self.send_json({"type": "hello"})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(MONITORING_GROUP, self.channel_name)

    async def alert_changed(self, event: dict) -> None:
        await self.send_json({"type": "alert", "alert": event["alert"]})
