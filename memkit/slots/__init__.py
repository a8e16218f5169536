"""Memory slots: documents compressed into a few memory vectors, found by self-matching keys, aggregated top-k
and read by the frozen LM as a prefix (``memkit.slots.model``)."""

from memkit.slots.model import SlotConfig, SlotModel

__all__ = ["SlotConfig", "SlotModel"]
