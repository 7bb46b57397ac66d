"""A listening channel that ended leaves nothing behind in the Redis channel layer's buffer:
the message that arrives after its long poll left (the poll found the decision in the database
first) would otherwise stay in the web process's memory for ever."""

import asyncio
import uuid

import pytest
from channels_redis.core import RedisChannelLayer

from core import live_events

pytestmark = pytest.mark.integration


async def _orphan_message(layer) -> str:
    """A long poll's channel that gets its event after it left, pulled in by another listener."""
    group = f"capture-{uuid.uuid4().hex[:8]}"
    ended = await layer.new_channel()
    await layer.group_add(group, ended)
    await layer.group_send(group, {"type": "decision.made", "capture": {"id": "x"}})
    await layer.group_discard(group, ended)
    # Another station's long poll in the same process receives; the process's one reader pulls
    # every message of the process from Redis, the ended channel's too.
    other = await layer.new_channel()
    await layer.send(other, {"type": "decision.made"})
    await asyncio.wait_for(layer.receive(other), 5)
    await asyncio.sleep(0.05)
    return ended


def test_a_late_message_for_an_ended_channel_is_dropped(redis_url):
    async def scenario():
        layer = RedisChannelLayer(hosts=[redis_url], prefix=f"test-{uuid.uuid4().hex[:6]}")
        ended = await _orphan_message(layer)
        assert ended in layer.receive_buffer  # what channels_redis keeps for ever without us
        live_events.channel_forget(layer, ended)
        assert ended not in layer.receive_buffer

        # A message that arrives after the forget is swept by a later one, past the expiry.
        late = await layer.new_channel()
        live_events.channel_forget(layer, late, now=1000.0)
        group = f"capture-{uuid.uuid4().hex[:8]}"
        await layer.group_add(group, late)
        await layer.group_send(group, {"type": "decision.made"})
        other = await layer.new_channel()
        await layer.send(other, {"type": "decision.made"})
        await asyncio.wait_for(layer.receive(other), 5)
        assert late in layer.receive_buffer
        live_events.channel_forget(
            layer, "unrelated", now=1000.0 + live_events.FORGET_AFTER_SECONDS
        )
        assert late not in layer.receive_buffer
        await layer.flush()

    asyncio.run(scenario())
