"""Flake: coded-computation resilience for edge inference, with a distilled parity model.

One module per concept:

- ``data``     datasets (CIFAR-10/100, Tiny-ImageNet-200, the offline mirror), cached uint8 tensors,
               tensor augmentation and seeded class-balanced subsets
- ``models``   CIFAR ResNets, torchvision ResNet-50/152 with the CIFAR stem, MobileNetV3, students
               built by skipping blocks, parameter and FLOP counts
- ``coding``   addition / concatenation encoders, subtraction decoder, coding groups
- ``trace``    the Alibaba v2018 batch_task trace: DAGs, long tail, slowdowns
- ``report``   figures, tables, metrics JSON and provenance under ``results/<profile>/``
- ``chain``    runs the notebooks in order with papermill (``./run_all.sh``)
"""

__version__ = "0.1.0"
