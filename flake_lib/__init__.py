"""Flake: coded-computation resilience for edge inference, with a distilled parity model.

One module per concept:

- ``data``     datasets (CIFAR-10/100, Tiny-ImageNet-200, the offline mirror), cached uint8 tensors,
               tensor augmentation and seeded class-balanced subsets
- ``models``   CIFAR ResNets, torchvision ResNet-50/152 with the CIFAR stem, MobileNetV3, students
               built by skipping blocks, parameter and FLOP counts
- ``coding``   addition / concatenation encoders, subtraction decoder, coding groups
- ``train``    SGD training loop with resumable checkpoints that store their arguments
- ``parity``   ParM parity models: the MSE objective to ``Σ F(x_i)`` and its targets
- ``distill``  Flake's losses (``L_KD``, ``L_Inter`` by forward hooks) and the NKD objective
- ``experiment`` one dataset + deployed model: trains F, PM, Flake and NKD; degraded-mode evaluation
- ``metrics``  accuracy vocabulary: ``A_a``, ``A_d``, reconstruction agreement, ``A_o``
- ``runtime``  OpenVINO export and compilation of served models
- ``methods``  the method registry: one spec per method (policy, redundant instances, name, look), from
               which every list of methods derives
- ``serving``  the edge serving system: the transport interface (worker processes, Ray actors, the
               discrete-event model), the frontend, one policy per method, load, faults, CPU pinning
- ``latency``  notebook 04's experiment, a module per part: roles, faults, schedules and seed streams,
               the bench, runs and sweeps, capacity, analysis, the analytic queueing model
- ``paper``    the paper's reported numbers and setup, each with where it comes from
- ``claims``   the paper's claims as code: one function per claim, metrics files → verdict and rule
- ``report``   ``REPORT.md`` and the README's results block, built from the claims (Tables I, II)
- ``stats``    tail summaries, paired bootstrap intervals across repeats, accuracy intervals
- ``trace``    the Alibaba v2018 batch_task trace: DAGs, long tail, slowdowns
- ``results``  figures, tables, metrics JSON and provenance under ``results/<profile>/``
- ``chain``    runs the notebooks in order with papermill (``./run_all.sh``)
- ``progress`` progress bars in JupyterLab, one status line in the terminal under the chain
- ``scaleout`` notebook 07's model of the serving system: calibration, validation, what-ifs, fleets
- ``primer``   notebook 00's diagram, models trained in seconds, explorers (k, encoder, ``f_u``, timing
               bound) and exercises
- ``seeding``  explicit seeding
"""

__version__ = "0.1.0"
