"""Test-wide settings.

Tests use tiny tensors, for which one thread is faster than several (and on a shared 2-core CI
machine, several threads per tiny op mostly wait on each other). Results never depend on it.
"""

import torch

torch.set_num_threads(1)
