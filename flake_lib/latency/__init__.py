"""The latency experiment (notebook 04, E4): the serving system of :mod:`flake_lib.serving` under faults.

One module per part of the experiment, in the order it is built:

- :mod:`.roles` — which worker plays which role for each method; native and emulated workers.
- :mod:`.faults` — stragglers, pauses and kills on a timeline, then on a schedule's queries.
- :mod:`.schedules` — arrivals and images, the named seed streams, the order of runs, Fig. 6's bursts.
- :mod:`.bench` — one transport per mode, a barrier before each run, one run = one method on one schedule;
  service-time and link measurements.
- :mod:`.runs` — the experiment's runs (hedge calibration, load sweep, engine comparison).
- :mod:`.capacity` — capacity at a tail objective and its ratio between two methods.
- :mod:`.analysis` — summaries, tail attribution, paired comparisons, the files' columns.
- :mod:`.queueing` — the analytic queueing model that predicts before anything runs.
- :mod:`.figures` — figures more than one notebook draws (the paired per-repeat plot of Table I).

The names most used are re-exported here (``from flake_lib import latency as lt``; ``lt.Bench``), with
:func:`~flake_lib.serving.pinning.placement` (the frontend's core and the workers').
"""


from ..serving.pinning import placement
from . import analysis, bench, capacity, faults, figures, queueing, roles, runs, schedules
from .analysis import (
                       BLOCK_COLUMNS,
                       BOUND_COLUMNS,
                       FIG6_COLUMNS,
                       RECOVERED,
                       SWEEP_COLUMNS,
                       TABLE1_COLUMNS,
                       block_summary,
                       engine_overhead,
                       fault_carriers,
                       fault_windows,
                       fig6_rows,
                       merge_counts,
                       ordered,
                       paired_table,
                       predicted_vs_measured,
                       recovered_by,
                       summarise,
                       tail_attribution,
                       tail_statistic,
                       write_queries,
)
from .bench import Bench, link_curve, measure_link_ms, measure_service_ms, simulated_transport
from .capacity import capacity_ratio, find_capacity
from .faults import (
                       REGIMES,
                       FaultConfig,
                       FaultPlan,
                       FaultTimeline,
                       fault_plan,
                       fault_timeline,
                       regime_config,
                       share_of_stragglers_over,
                       straggler_reference_ms,
)
from .roles import MODES, deployment, device_times, role_map, worker_model, worker_specs, workers_for
from .runs import engine_comparison, hedge_delay_ms, run_load_sweep
from .schedules import (
                       SEED_STREAMS,
                       Schedule,
                       abba_order,
                       burst_schedule,
                       headline_plan,
                       level_schedule,
                       level_seed,
                       make_schedule,
                       rotated_orders,
                       stream_seed,
)

__all__ = ["BLOCK_COLUMNS", "BOUND_COLUMNS", "FIG6_COLUMNS", "MODES", "RECOVERED", "REGIMES", "SEED_STREAMS",
           "SWEEP_COLUMNS", "TABLE1_COLUMNS", "Bench", "FaultConfig", "FaultPlan", "FaultTimeline", "Schedule",
           "abba_order", "analysis", "bench", "block_summary", "burst_schedule", "capacity", "capacity_ratio",
           "deployment", "device_times", "engine_comparison", "engine_overhead", "fault_carriers", "fault_plan",
           "fault_timeline", "fault_windows", "faults", "fig6_rows", "figures", "find_capacity", "headline_plan",
           "hedge_delay_ms", "level_schedule", "level_seed", "link_curve", "make_schedule", "measure_link_ms",
           "measure_service_ms", "merge_counts", "ordered", "paired_table", "placement", "predicted_vs_measured",
           "queueing", "recovered_by", "regime_config", "role_map", "roles", "rotated_orders", "run_load_sweep",
           "runs", "schedules", "share_of_stragglers_over", "simulated_transport", "straggler_reference_ms",
           "stream_seed", "summarise", "tail_attribution", "tail_statistic", "worker_model", "worker_specs",
           "workers_for", "write_queries"]
