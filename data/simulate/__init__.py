"""The simulated world: the demo default and the ground truth (DESIGN.md section 5, docs/SIMULATION.md).

``build_world(con, config)`` builds a world month by month through the real billing engine and
records the truth it built in (``sim_*`` tables). ``DEFAULT_DEMO`` is the app's default world and
``DEMO_USERS`` its sign-ins.
"""
from data.simulate.build import WorldSummary, build_world
from data.simulate.config import (DEFAULT_DEMO, DEMO_USERS, OfferSpec, PlanSpec, SimConfig, default_start,
                                  demo_config)

__all__ = ["build_world", "WorldSummary", "SimConfig", "PlanSpec", "OfferSpec", "DEFAULT_DEMO", "DEMO_USERS",
           "default_start", "demo_config"]
