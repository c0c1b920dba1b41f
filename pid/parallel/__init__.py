"""One image over several GPUs: sequence-parallel decoding on torch.distributed (see docs/parallel.md)."""

from pid.parallel.decoder import SequenceParallelDecoder, sequence_parallel

__all__ = ["SequenceParallelDecoder", "sequence_parallel"]
