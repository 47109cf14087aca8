"""`rewardkit` with accelerate's device gate for FSDP and DeepSpeed lifted on CPU (tests only).

accelerate 1.15 builds the FSDP / DeepSpeed plugin from the launch config on any device, but
`AcceleratorState` switches to it only for GPU-class devices: with ``ACCELERATE_USE_CPU=1`` the run
stays plain data parallel (MULTI_CPU, gloo). torch's FSDP2 (`fully_shard`) and DeepSpeed's CPU
accelerator both run on CPU with gloo, so this wrapper makes the one decision accelerate skips --
the same assignments its GPU branch makes -- and then runs the rewardkit CLI unchanged. It lets
the sharded code paths of rewardkit (sharded checkpoints, resume, gathering the final weights,
export) run on a machine without GPUs. Use: ``accelerate launch --config_file C tests/cpu_sharded_launch.py train ...``
with ``ACCELERATE_USE_CPU=1``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from accelerate.state import AcceleratorState, DistributedType, PartialState

_original_init = AcceleratorState.__init__


def _init_with_sharding_on_cpu(self: Any, *args: Any, fsdp_plugin: Any = None, deepspeed_plugin: Any = None,
                               **kwargs: Any) -> None:
    _original_init(self, *args, fsdp_plugin=fsdp_plugin, deepspeed_plugin=deepspeed_plugin, **kwargs)
    if self.distributed_type != DistributedType.MULTI_CPU:
        return
    if fsdp_plugin is not None:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
    elif deepspeed_plugin is not None and os.environ.get("ACCELERATE_USE_DEEPSPEED", "false") == "true":
        self.distributed_type = DistributedType.DEEPSPEED
        deepspeed_plugin.set_mixed_precision(self._mixed_precision)
        deepspeed_plugin.select(_from_accelerator_state=True)
        self.deepspeed_plugins = deepspeed_plugin
        self._mixed_precision = "no"  # DeepSpeed's own config carries the precision
    else:
        return
    PartialState._shared_state["distributed_type"] = self.distributed_type


AcceleratorState.__init__ = _init_with_sharding_on_cpu

if __name__ == "__main__":
    from rewardkit.cli import main

    sys.exit(main())
