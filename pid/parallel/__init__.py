"""One image over several GPUs: sequence-parallel decoding on torch.distributed (see docs/parallel.md)."""

from pid.parallel.cfg import cfg_parallel
from pid.parallel.decoder import SequenceParallelDecoder, sequence_parallel

__all__ = ["SequenceParallelDecoder", "cfg_parallel", "sequence_parallel"]
