"""What must happen when dnn_spring is imported, before it imports torch.

* the reproducible mode's settings (:func:`dnn_spring.train._reproducible.apply_before_torch`),
  which the libraries read when they load;
* a Slurm task's first ``SIGUSR2`` handler (:func:`dnn_spring.train._preempt.install_early_handler`):
  a task unpickling its job imports this package long before submitit installs
  its own handler, and the signal's default action would end the task.
"""

from dnn_spring.train._preempt import install_early_handler
from dnn_spring.train._reproducible import apply_before_torch

apply_before_torch()
install_early_handler()
