"""The chaos run's last look: `jobmeter doctor`'s own check, run in process once the run has drained."""

from __future__ import annotations

from events.envelope import utcnow
from jobmeter.settings import Settings
from services.devtools.chaos.invariants import Invariant, doctor_empty
from services.engine.doctor import gather
from services.platform.deadletters import all_dead_letters
from services.platform.resources import open_resources


async def doctor_after_run(settings: Settings, injected_keys: set[str]) -> Invariant:
    """What the doctor lists now, as the `doctor_empty` invariant; `injected_keys` are the record keys of the
    garbage the run put on the job topic on purpose."""
    async with open_resources(settings, producer="chaos-doctor") as res:
        items = await gather(res, utcnow())
        letters = [letter for letter in await all_dead_letters(settings.kafka_bootstrap_servers, res.topics)
                   if not letter.settled]
    consumers = {letter.consumer for letter in letters}
    other = {letter.consumer for letter in letters if letter.key not in injected_keys}
    return doctor_empty([item.as_json() for item in items], consumers - other)
