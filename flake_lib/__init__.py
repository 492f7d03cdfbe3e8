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
- ``serving``  the multi-process edge serving system, load generator, faults, latency statistics
- ``benchmark`` notebook 04's experiment: roles, native / emulated devices, fault timelines, interleaved
               repeats, load and timing-bound sweeps, capacity at a tail objective, Fig. 6 bursts
- ``paper``    the paper's reported numbers and setup, each with where it comes from
- ``claims``   the paper's claims as code: one function per claim, metrics files → verdict and rule
- ``report``   ``REPORT.md`` and the README's results block, built from the claims (Tables I, II)
- ``stats``    tail summaries, paired bootstrap intervals across repeats, accuracy intervals
- ``trace``    the Alibaba v2018 batch_task trace: DAGs, long tail, slowdowns
- ``results``  figures, tables, metrics JSON and provenance under ``results/<profile>/``
- ``chain``    runs the notebooks in order with papermill (``./run_all.sh``)
- ``primer``   notebook 00's diagram, models trained in seconds, explorers (k, encoder, ``f_u``, timing
               bound) and exercises
- ``seeding``  explicit seeding
"""

__version__ = "0.1.0"
