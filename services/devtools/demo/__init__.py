"""The end-to-end demo: the whole engine on a generated workload, over real servers, through the sample gateway.

`demo_engine` serves the engine (every consumer) and the sample gateway over HTTP; `run_workload` drives ~50
customers through them — keys, RapidAPI headers, PAYG balances, plan changes, dunning, a RapidAPI export — and
reads back what was billed where, with one check per scenario.
"""

from services.devtools.demo.engine import DemoEngine, demo_engine, overrides
from services.devtools.demo.results import Check, DemoResult, money
from services.devtools.demo.run import run_workload

__all__ = ["Check", "DemoEngine", "DemoResult", "demo_engine", "money", "overrides", "run_workload"]
